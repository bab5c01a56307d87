//! `dossier token`: mints an API token for a subject, tenant and roles.

use secrecy::ExposeSecret;

use crate::api::auth::{Claims, Keys, Role};
use crate::error::AppError;
use crate::settings::Settings;

/// Longest validity accepted: a year.
const MAX_TTL_SECONDS: i64 = 366 * 24 * 3600;

/// The token, signed with `SECRET_KEY`.
pub fn mint(settings: &Settings, sub: String, tenant: String, roles: &[String], ttl: &str) -> Result<String, AppError> {
    let secret = settings
        .secret_key
        .as_ref()
        .ok_or_else(|| AppError::Usage("SECRET_KEY is not set: it signs the tokens the server accepts".into()))?;
    let keys = Keys::new(Some(secret.expose_secret())).map_err(AppError::Usage)?;
    let roles = roles
        .iter()
        .map(|role| Role::parse(role).ok_or_else(|| AppError::Usage(format!("unknown role {role:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims { sub, tenant, roles, exp: now + parse_ttl(ttl)?, iat: Some(now), nbf: None };
    for (name, value) in [("--sub", &claims.sub), ("--tenant", &claims.tenant)] {
        if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
            return Err(AppError::Usage(format!("{name} must be 1 to 255 printable bytes")));
        }
    }
    keys.mint(&claims).map_err(AppError::Usage)
}

/// Seconds from `90`, `90s`, `15m`, `12h` or `30d`.
fn parse_ttl(ttl: &str) -> Result<i64, AppError> {
    let invalid = || AppError::Usage(format!("--ttl {ttl:?}: expected seconds or a number with s, m, h or d"));
    let (number, unit) = match ttl.trim().char_indices().last() {
        Some((index, unit)) if unit.is_ascii_alphabetic() => (&ttl.trim()[..index], unit),
        _ => (ttl.trim(), 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(invalid()),
    };
    let seconds = number.parse::<i64>().map_err(|_| invalid())?.checked_mul(scale).ok_or_else(invalid)?;
    if !(1..=MAX_TTL_SECONDS).contains(&seconds) {
        return Err(AppError::Usage(format!("--ttl {ttl:?}: must be between 1 second and 366 days")));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ttl_accepts_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("90").ok(), Some(90));
        assert_eq!(parse_ttl("15m").ok(), Some(900));
        assert_eq!(parse_ttl("2d").ok(), Some(172_800));
        for bad in ["", "0", "-5", "5y", "h", "9999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
