//! Who answered: the pod identity every reply carries in `x-served-by`, for the incident
//! record and to tell which workload answered a request the gateway retried onto stable.
//! It is the pod's `POD_NAME` (the manifests set it through the downward API), else its
//! `HOSTNAME`, else the kernel's host name, made a safe header token.

/// Longest identity kept, bytes (a Kubernetes object name's limit).
pub const MAX_LEN: usize = 253;

/// The identity when no candidate has a usable character.
pub const UNKNOWN: &str = "unknown";

/// `raw` as a token of ASCII letters, digits, `.`, `_` and `-`: any other character becomes
/// `-`, surrounding `-` are trimmed, at most [`MAX_LEN`] bytes; `None` if nothing is left.
pub fn sanitise(raw: &str) -> Option<String> {
    let mapped: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .take(MAX_LEN)
        .collect();
    let token = mapped.trim_matches('-');
    (!token.is_empty()).then(|| token.to_string())
}

/// The first candidate that sanitises to something, in order of preference (`POD_NAME`,
/// `HOSTNAME`, the kernel's host name), else [`UNKNOWN`].
pub fn identity<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> String {
    candidates
        .into_iter()
        .flatten()
        .find_map(sanitise)
        .unwrap_or_else(|| UNKNOWN.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_pass_and_anything_else_is_made_safe() {
        assert_eq!(
            sanitise("yolo-v10-gray-7d9f8c-x2x4q").as_deref(),
            Some("yolo-v10-gray-7d9f8c-x2x4q")
        );
        assert_eq!(
            sanitise(" node_1.local \n").as_deref(),
            Some("node_1.local")
        );
        // Header and log injection, spaces, non-ASCII: replaced, never passed through.
        assert_eq!(
            sanitise("a\r\nx-canary-breach: latency").as_deref(),
            Some("a--x-canary-breach--latency")
        );
        assert_eq!(sanitise("café pod").as_deref(), Some("caf--pod"));
        assert_eq!(sanitise("\u{7f}/;"), None);
        assert_eq!(sanitise(""), None);
        assert_eq!(sanitise(&"p".repeat(400)).map(|s| s.len()), Some(MAX_LEN));
    }

    #[test]
    fn pod_name_first_then_host_name() {
        assert_eq!(identity([Some("pod-a"), Some("host-b")]), "pod-a");
        assert_eq!(identity([None, Some("host-b")]), "host-b");
        assert_eq!(identity([Some(" "), Some("host-b")]), "host-b");
        assert_eq!(identity([None, None]), UNKNOWN);
    }
}
