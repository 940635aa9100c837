//! Regular expressions from configuration (rule paths, header and query matches,
//! rewrite patterns), compiled within one set of bounds so that no user's pattern can
//! cost much memory or more than time linear in the input (the `regex` crate's
//! guarantee). The table's matchers and the filters both build theirs here.

use regex::Regex;

/// Largest compiled size of one regular expression (the `regex` crate's own measure).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Longest pattern accepted, in bytes (the CRD says the same).
pub const REGEX_MAX_LEN: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct InvalidRegex {
    pub pattern: String,
    pub reason: String,
}

/// Compiles `pattern` as written (searched, not anchored), within the bounds.
pub fn bounded_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, InvalidRegex> {
    compile(pattern, pattern, case_insensitive)
}

/// Compiles a pattern that must match a whole value (`^(?:pattern)$`), within the
/// bounds.
pub fn full_match_regex(pattern: &str) -> Result<Regex, InvalidRegex> {
    compile(pattern, &format!("^(?:{pattern})$"), false)
}

fn compile(given: &str, source: &str, case_insensitive: bool) -> Result<Regex, InvalidRegex> {
    let bad = |reason: String| InvalidRegex {
        pattern: given.to_string(),
        reason,
    };
    if given.len() > REGEX_MAX_LEN {
        return Err(bad(format!("longer than {REGEX_MAX_LEN} bytes")));
    }
    regex::RegexBuilder::new(source)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            bad(match e {
                regex::Error::CompiledTooBig(_) => "too large once compiled".to_string(),
                other => other.to_string().lines().last().unwrap_or_default().trim().to_string(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_match_is_anchored_and_search_is_not() {
        let full = full_match_regex("a+").unwrap();
        assert!(full.is_match("aaa"));
        assert!(!full.is_match("baaa"));
        let search = bounded_regex("a+", true).unwrap();
        assert!(search.is_match("bAAa"));
    }

    #[test]
    fn bounds_are_enforced_with_the_pattern_named() {
        let long = "a".repeat(REGEX_MAX_LEN + 1);
        let err = bounded_regex(&long, false).unwrap_err();
        assert_eq!(err.reason, format!("longer than {REGEX_MAX_LEN} bytes"));
        // Compiles to far more than the size limit: refused, not built.
        let err = full_match_regex(r"\w{100}\w{100}\w{100}").unwrap_err();
        assert_eq!(err.reason, "too large once compiled");
        assert_eq!(err.pattern, r"\w{100}\w{100}\w{100}");
        let err = full_match_regex("(").unwrap_err();
        assert!(err.reason.contains("unclosed group"), "{}", err.reason);
    }
}
