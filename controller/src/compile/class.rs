//! Which Ingresses are Portico's.
//!
//! In order, the first that applies decides:
//!
//! 1. The legacy `kubernetes.io/ingress.class` annotation, when present, must equal
//!    one of the configured class names (`--ingress-class`). It wins over
//!    `spec.ingressClassName`, as the field's API documentation asks, because clusters
//!    that still carry it set it on purpose (the API server refuses new Ingresses
//!    where the two differ).
//! 2. `spec.ingressClassName` names an IngressClass: ours when that object's
//!    `spec.controller` is one of our controller names (`--controller-name`), or, with
//!    `--ingress-class-by-name`, when its name is one of the configured class names
//!    whatever its controller (ingress-nginx's `--ingress-class-by-name`). When no
//!    IngressClass of that name exists, ours when the name is one of the configured
//!    class names, so file mode and small clusters work without creating the
//!    IngressClass object, and a taken-over class keeps being served when its
//!    IngressClass is deleted with the controller that installed it.
//! 3. No class at all: ours with `--watch-ingress-without-class` (ingress-nginx's
//!    flag), or when an IngressClass of ours carries the
//!    `ingressclass.kubernetes.io/is-default-class: "true"` annotation.
//!
//! Taking ingress-nginx's Ingresses over in place is then two more values:
//! `--ingress-class nginx --controller-name k8s.io/ingress-nginx`.
//!
//! Ingresses that are not ours are skipped without a diagnostic: they belong to
//! another controller, which reports on them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::CompileOptions;

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

pub(super) struct Classes<'a> {
    /// IngressClass name to whether its controller is ours.
    by_name: BTreeMap<&'a str, bool>,
    /// An IngressClass of ours is marked as the cluster default.
    default_is_ours: bool,
    opts: &'a CompileOptions,
}

impl<'a> Classes<'a> {
    pub fn new(classes: &'a [IngressClass], opts: &'a CompileOptions) -> Self {
        let mut by_name = BTreeMap::new();
        let mut default_is_ours = false;
        for class in classes {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            let ours = controller.is_some_and(|c| opts.controller_names.iter().any(|n| n == c))
                || (opts.ingress_class_by_name && opts.serves_class_name(name));
            by_name.insert(name, ours);
            let is_default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            default_is_ours |= ours && is_default;
        }
        Classes {
            by_name,
            default_is_ours,
            opts,
        }
    }

    pub fn owns(&self, ingress: &Ingress) -> bool {
        match class_of(ingress) {
            Some((LEGACY_CLASS_ANNOTATION, class)) => self.opts.serves_class_name(class),
            Some((_, name)) => match self.by_name.get(name) {
                Some(&ours) => ours,
                None => self.opts.serves_class_name(name),
            },
            None => self.opts.watch_ingress_without_class || self.default_is_ours,
        }
    }
}

/// The class an Ingress names and the field that names it: the legacy annotation,
/// which wins, or a non-empty `spec.ingressClassName`.
pub fn class_of(ingress: &Ingress) -> Option<(&'static str, &str)> {
    let legacy = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
    if let Some(class) = legacy {
        return Some((LEGACY_CLASS_ANNOTATION, class.as_str()));
    }
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .filter(|name| !name.is_empty())
        .map(|name| ("spec.ingressClassName", name))
}

/// Whether a controller answering to class name `class` with `spec.controller`
/// `controller` serves `ingress`, by the rules above: how `portico migrate` picks out
/// ingress-nginx's Ingresses.
pub fn served_by(ingress: &Ingress, classes: &[IngressClass], class: &str, controller: &str) -> bool {
    let opts = CompileOptions {
        ingress_classes: vec![class.to_string()],
        controller_names: vec![controller.to_string()],
        ..CompileOptions::default()
    };
    Classes::new(classes, &opts).owns(ingress)
}
