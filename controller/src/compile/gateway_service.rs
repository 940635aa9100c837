//! What the Service writer needs of each served Gateway (service mode): its name in
//! the Services' namespace and the listener ports it maps onto internal ports.

/// One Gateway's ports: each distinct listener port and the internal port every
/// Portico replica binds for it, ascending by listener port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayPorts {
    pub namespace: String,
    pub name: String,
    /// `(listener port, internal port)`.
    pub ports: Vec<(u16, u16)>,
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike `DefaultHasher`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The name of the Service kept for Gateway `namespace/name`: `gw-`, 8 hex digits of
/// the hash of `namespace/name` (two Gateways of the same name in different namespaces
/// get different Services), `-`, and as much of the Gateway's name as fits in a
/// Service name (63 characters, a DNS label), without a trailing `-`.
pub fn gateway_service_name(namespace: &str, name: &str) -> String {
    let hash = fnv1a64(format!("{namespace}/{name}").as_bytes()) as u32;
    let mut out = format!("gw-{hash:08x}-");
    let room = 63 - out.len();
    // Gateway names are DNS subdomains: dots are not allowed in a Service name.
    out.extend(name.chars().take(room).map(|c| if c == '.' { '-' } else { c }));
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a's published test vectors (the empty string and "a").
    #[test]
    fn fnv1a64_matches_the_reference() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// A Service name is a DNS label: at most 63 characters, no dot, no trailing '-'.
    #[test]
    fn service_name_is_a_dns_label_unique_per_namespace() {
        let short = gateway_service_name("apps", "web");
        assert!(
            short.starts_with("gw-") && short.ends_with("-web") && short.len() == 15,
            "{short}"
        );
        assert_ne!(short, gateway_service_name("other", "web"));
        let long = gateway_service_name("apps", &format!("{}-{}.x", "a".repeat(51), "b".repeat(20)));
        assert!(
            long.len() <= 63 && !long.ends_with('-') && !long.contains('.'),
            "{long}"
        );
    }
}
