//! Which Ingresses are Portico's.

use super::*;
use crate::compile::LEGACY_CLASS_ANNOTATION;

fn owned(w: World) -> bool {
    w.backend("default", "web", &["10.0.0.1"])
        .compile()
        .hit("a.com", "/")
        .is_some()
}

fn web() -> IngressBuilder {
    ingress("default", "web").host("a.com").path("/", "Prefix", "web", 80)
}

/// Given an ingressClassName whose IngressClass names our controller, the Ingress is ours.
#[test]
fn class_name_of_our_ingress_class() {
    let w = world().with(ingress_class("edge", OURS)).with(web().class("edge"));
    assert!(owned(w));
}

/// Given ingressClassName equal to the configured class and no IngressClass object, the
/// Ingress is ours: file mode works without declaring the IngressClass.
#[test]
fn class_name_matches_option_without_ingress_class_object() {
    assert!(owned(world().with(web().class("portico"))));
    assert!(!owned(world().with(web().class("nginx"))));
}

/// Given an IngressClass of another controller, its Ingresses are not ours, even when it
/// is named like our configured class.
#[test]
fn class_of_another_controller_is_ignored() {
    let w = world()
        .with(ingress_class("portico", "k8s.io/ingress-nginx"))
        .with(web().class("portico"));
    assert!(!owned(w));
    let w = world()
        .with(ingress_class("nginx", "k8s.io/ingress-nginx"))
        .with(web().class("nginx"));
    assert!(!owned(w));
}

/// Given an Ingress with no class, it is ours when our IngressClass is the default class.
#[test]
fn no_class_uses_our_default_class() {
    let w = world()
        .with(ingress_class("edge", OURS).default_class())
        .with(web().no_class());
    assert!(owned(w));
}

/// Given an Ingress with no class, it is not ours when no IngressClass of ours is the
/// default, even if another controller's is.
#[test]
fn no_class_without_our_default_class_is_ignored() {
    assert!(!owned(world().with(ingress_class("edge", OURS)).with(web().no_class())));
    let other_default = ingress_class("nginx", "k8s.io/ingress-nginx").default_class();
    assert!(!owned(world().with(other_default).with(web().no_class())));
}

/// Given the legacy kubernetes.io/ingress.class annotation, it decides over
/// spec.ingressClassName, both ways.
#[test]
fn legacy_annotation_takes_precedence() {
    let w = world().with(web().class("nginx").annotation(LEGACY_CLASS_ANNOTATION, "portico"));
    assert!(owned(w));
    let w = world().with(web().class("portico").annotation(LEGACY_CLASS_ANNOTATION, "nginx"));
    assert!(!owned(w));
    let w = world().with(web().no_class().annotation(LEGACY_CLASS_ANNOTATION, "portico"));
    assert!(owned(w));
}

/// Given a configured class name other than the default, only that name is ours.
#[test]
fn configured_class_name_is_used() {
    let opts = CompileOptions {
        ingress_class: "internal".into(),
        ..Default::default()
    };
    let w = world()
        .backend("default", "web", &["10.0.0.1"])
        .with(web().class("internal"));
    assert!(w.compile_with(&opts).hit("a.com", "/").is_some());
    let w = world()
        .backend("default", "web", &["10.0.0.1"])
        .with(web().class("portico"));
    assert!(w.compile_with(&opts).hit("a.com", "/").is_none());
}

/// Given Ingresses of another controller, broken or not, they produce no diagnostics.
#[test]
fn unowned_ingresses_are_silent() {
    let broken = ingress("default", "theirs")
        .class("nginx")
        .host("bad host")
        .path("nope", "Weird", "missing", 1);
    let c = world().with(broken).compile();
    c.assert_clean();
    assert_eq!(c.table.route_count(), 0);
}

/// Given a watched namespace, Ingresses in other namespaces are left out.
#[test]
fn watch_namespace_filters_ingresses() {
    let opts = CompileOptions {
        watch_namespace: Some("team-a".into()),
        ..Default::default()
    };
    let w = world()
        .backend("team-a", "web", &["10.0.0.1"])
        .backend("team-b", "web", &["10.0.0.2"])
        .with(ingress("team-a", "web").host("a.com").path("/", "Prefix", "web", 80))
        .with(ingress("team-b", "web").host("b.com").path("/", "Prefix", "web", 80));
    let c = w.compile_with(&opts);
    assert_eq!(c.hit("a.com", "/").as_deref(), Some("team-a/web"));
    assert_eq!(c.hit("b.com", "/"), None);
    c.assert_clean();
}
