//! Validation of model names (as SageMaker validates them) and artifact file names.

use crate::error::{Result, StoreError};

/// Longest model name SageMaker accepts.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a model name against SageMaker's rule `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63
/// characters.
pub fn validate_model_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(StoreError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return invalid("only ASCII letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("it must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks the name of a file stored inside an artifact: one plain path component.
pub(crate) fn validate_file_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(StoreError::InvalidFileName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == crate::MANIFEST_FILE {
        return invalid("manifest.json is reserved for the store");
    }
    if name.starts_with('.') {
        return invalid("it must not start with '.'");
    }
    if name.contains(['/', '\\', '\0']) {
        return invalid("it must be a single file name without separators");
    }
    if name.len() > 255 {
        return invalid("it is longer than 255 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sagemaker_names() {
        for ok in ["a", "A1", "my-model", "m--2", &"x".repeat(63)] {
            validate_model_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", "-a", "a-", "a_b", "a.b", "a/b", "ü", &"x".repeat(64)] {
            let err = validate_model_name(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn refuses_bad_file_names() {
        for bad in ["", "manifest.json", ".hidden", "a/b", "..", "a\\b"] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
        validate_file_name("model.onnx").unwrap();
    }
}
