//! The rule for the names of groups, keys and accounts, shared by the config and the admin API.

/// What a name for a group, key or account may be (said in errors of the config and the admin API).
pub const NAME_RULE: &str = "use 1–64 letters, digits, '-', '_', '.' or '@'";

/// A name for a group, key or account: printable, no slash (it is a path segment of the admin
/// API), 1–64 chars.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}
