use serde::{Deserialize, Serialize};

use crate::core::error::{Result, StreamError};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an existing id string (no validation: lookups of unknown ids simply fail).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A processor's id in a runtime, e.g. `camera-k3x9a2` (generated) or `src` (chosen).
    ProcessorUniqueId
);
string_id!(
    /// A link's id in a runtime, e.g. `link-q8w2e1`.
    LinkUniqueId
);

const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Six random lowercase letters and digits: 36^6 ≈ 2·10⁹ ids, checked for collision by the caller.
pub(crate) fn random_suffix() -> String {
    (0..6)
        .map(|_| char::from(SUFFIX_ALPHABET[fastrand::usize(..SUFFIX_ALPHABET.len())]))
        .collect()
}

/// `TestPatternProcessor` → `test-pattern`; `APIServer` → `api-server`.
pub(crate) fn id_prefix_for_type(type_name: &str) -> String {
    let base = type_name.strip_suffix("Processor").unwrap_or(type_name);
    let base = if base.is_empty() { type_name } else { base };
    let chars: Vec<char> = base.chars().collect();
    let mut out = String::with_capacity(base.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "processor".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Ids chosen by users (graph files, `ProcessorSpec::with_id`): 1–64 of `[A-Za-z0-9_-]`,
/// starting with a letter or digit, so they are safe in URLs, logs and `processor.port` refs.
pub(crate) fn validate_user_id(id: &str) -> Result<()> {
    let ok_len = (1..=64).contains(&id.len());
    let ok_first = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(StreamError::InvalidId {
            id: id.to_string(),
            reason: "ids are 1-64 characters of letters, digits, '-' and '_', starting with a letter or digit".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_kebab_case_without_processor() {
        assert_eq!(id_prefix_for_type("TestPatternProcessor"), "test-pattern");
        assert_eq!(id_prefix_for_type("CameraProcessor"), "camera");
        assert_eq!(id_prefix_for_type("ApiServerProcessor"), "api-server");
        assert_eq!(id_prefix_for_type("HTTPSourceProcessor"), "http-source");
        assert_eq!(id_prefix_for_type("Mp4WriterProcessor"), "mp4-writer");
        assert_eq!(id_prefix_for_type("Processor"), "processor");
    }

    #[test]
    fn suffixes_are_six_safe_chars() {
        let s = random_suffix();
        assert_eq!(s.len(), 6);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(validate_user_id("src").is_ok());
        assert!(validate_user_id("cam_1-a").is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id("-x").is_err());
        assert!(validate_user_id("a.b").is_err());
        assert!(validate_user_id("a/b").is_err());
        assert!(validate_user_id(&"a".repeat(65)).is_err());
    }
}
