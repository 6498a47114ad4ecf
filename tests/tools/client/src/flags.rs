//! What the tools' flag checks share: the error that names the flag ([`ConfigError`]), and
//! the check that keeps a tool on loopback unless it is told otherwise ([`check_url`]).

use std::fmt;

use crate::cohort::CohortError;

/// A flag's value that cannot be used: the error names the flag.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    Flag(&'static str, String),
    Cohort(CohortError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Flag(flag, why) => write!(f, "--{flag}: {why}"),
            ConfigError::Cohort(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<CohortError> for ConfigError {
    fn from(e: CohortError) -> ConfigError {
        ConfigError::Cohort(e)
    }
}

/// `http://host[:port]/...` → `host`, or why not.
fn http_host(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} must start with http://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(host)
}

/// Refuses a URL that is not `http://` or, unless `allow_remote`, not on loopback; the error
/// names `flag`.
pub fn check_url(flag: &'static str, url: &str, allow_remote: bool) -> Result<(), ConfigError> {
    let host = http_host(url).map_err(|e| ConfigError::Flag(flag, e))?;
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(ConfigError::Flag(
            flag,
            format!("{host} is not loopback; pass --allow-remote to send traffic there"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed_and_the_flag_is_named() {
        for ok in [
            "http://127.0.0.1:10000/infer",
            "http://[::1]:9901",
            "http://localhost/x",
        ] {
            assert_eq!(check_url("target", ok, false), Ok(()), "{ok}");
        }
        let remote = check_url("admin", "http://10.0.0.1:9901", false).unwrap_err();
        assert!(
            remote
                .to_string()
                .starts_with("--admin: 10.0.0.1 is not loopback")
        );
        assert_eq!(check_url("admin", "http://10.0.0.1:9901", true), Ok(()));
        for bad in ["https://127.0.0.1/", "http://:9901", "127.0.0.1:80"] {
            let e = check_url("target", bad, true).unwrap_err().to_string();
            assert!(e.starts_with("--target: "), "{bad}: {e}");
        }
    }
}
