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
        ingress_classes: vec!["internal".into()],
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

const NGINX: &str = "k8s.io/ingress-nginx";

fn owned_with(w: World, opts: &CompileOptions) -> bool {
    w.backend("default", "web", &["10.0.0.1"])
        .compile_with(opts)
        .hit("a.com", "/")
        .is_some()
}

/// Portico told to take ingress-nginx's class over: `--ingress-class portico,nginx
/// --controller-name portico.dev/ingress-controller,k8s.io/ingress-nginx`.
fn takeover() -> CompileOptions {
    CompileOptions {
        ingress_classes: vec!["portico".into(), "nginx".into()],
        controller_names: vec![OURS.into(), NGINX.into()],
        ..Default::default()
    }
}

/// Given a second controller name, an unchanged Ingress of ingress-nginx's `nginx`
/// IngressClass is served, and Portico's own class still is (ingress-nginx's
/// docs/user-guide/k8s-122-migration.md: a controller serves "Ingresses that refer to
/// any IngressClass that has the same spec.controller as configured in
/// --controller-class").
#[test]
fn taken_over_controller_serves_its_classes() {
    let nginx = || world().with(ingress_class("nginx", NGINX));
    assert!(!owned(nginx().with(web().class("nginx"))));
    assert!(owned_with(nginx().with(web().class("nginx")), &takeover()));
    let ours = nginx()
        .with(ingress_class("portico", OURS))
        .with(web().class("portico"));
    assert!(owned_with(ours, &takeover()));
    let other = nginx()
        .with(ingress_class("alb", "ingress.k8s.aws/alb"))
        .with(web().class("alb"));
    assert!(!owned_with(other, &takeover()));
}

/// Given a second class name, the legacy annotation with that value is served
/// (ingress-nginx's docs/user-guide/multiple-ingress.md: the annotation must match
/// `--ingress-class`).
#[test]
fn taken_over_class_name_serves_the_legacy_annotation() {
    let legacy = || world().with(web().no_class().annotation(LEGACY_CLASS_ANNOTATION, "nginx"));
    assert!(!owned(legacy()));
    assert!(owned_with(legacy(), &takeover()));
    let opts = CompileOptions {
        ingress_classes: vec!["portico".into(), "nginx".into()],
        ..Default::default()
    };
    assert!(owned_with(legacy(), &opts), "the annotation needs no controller name");
}

/// Given a taken-over class whose IngressClass is gone (deleted with the chart that
/// installed ingress-nginx), its Ingresses stay served by name.
#[test]
fn taken_over_class_survives_deletion_of_its_ingress_class() {
    assert!(owned_with(world().with(web().class("nginx")), &takeover()));
}

/// Given `--ingress-class-by-name`, an IngressClass named like a configured class is
/// served whatever its controller; without it, the controller decides (ingress-nginx's
/// store.go adds an IngressClass "as ingress-class-by-name is configured").
#[test]
fn ingress_class_by_name_ignores_the_controller() {
    let w = || world().with(ingress_class("nginx", NGINX)).with(web().class("nginx"));
    let mut opts = CompileOptions {
        ingress_classes: vec!["portico".into(), "nginx".into()],
        ..Default::default()
    };
    assert!(!owned_with(w(), &opts));
    opts.ingress_class_by_name = true;
    assert!(owned_with(w(), &opts));
    let other = world().with(ingress_class("alb", NGINX)).with(web().class("alb"));
    assert!(!owned_with(other, &opts), "only the configured names");
}

/// Given `--watch-ingress-without-class`, Ingresses with neither field nor annotation
/// are served, and Ingresses of other classes still are not (ingress-nginx's
/// docs/user-guide/k8s-122-migration.md, "What is the flag
/// '--watch-ingress-without-class'").
#[test]
fn watch_ingress_without_class_serves_classless_ingresses() {
    let opts = CompileOptions {
        watch_ingress_without_class: true,
        ..Default::default()
    };
    assert!(!owned(world().with(web().no_class())));
    assert!(owned_with(world().with(web().no_class()), &opts));
    let other = world().with(ingress_class("nginx", NGINX)).with(web().class("nginx"));
    assert!(!owned_with(other, &opts));
    let legacy = world().with(web().no_class().annotation(LEGACY_CLASS_ANNOTATION, "nginx"));
    assert!(!owned_with(legacy, &opts), "an annotation is a class");
}

/// Given ingress-nginx's class marked as the cluster default and taken over, Ingresses
/// with no class are served, as they are for Portico's own default class.
#[test]
fn taken_over_default_class_serves_classless_ingresses() {
    let w = || {
        world()
            .with(ingress_class("nginx", NGINX).default_class())
            .with(web().no_class())
    };
    assert!(!owned(w()));
    assert!(owned_with(w(), &takeover()));
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
