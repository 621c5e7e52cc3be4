//! Kafka's rules for topic names.

/// Kafka's limit: a partition directory is `<topic>-<partition>` and must fit a 255-byte file name.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// Why a topic name is refused, in words a user can act on.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "Topic name '{name}' is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-' ({bad:?})"
        ));
    }
    Ok(())
}

/// Topics whose names differ only in '.' versus '_' collide in metric names, so Kafka refuses the second.
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_and_illegal_names() {
        assert!(validate("orders.v1_eu-west").is_ok());
        assert!(validate("").is_err());
        assert!(validate("..").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("ü").is_err());
        assert!(validate(&"x".repeat(250)).is_err());
        assert!(validate(&"x".repeat(249)).is_ok());
        assert_eq!(collision_key("a.b"), collision_key("a_b"));
    }
}
