//! A job's restart policy: what the scheduler does when one of its runs fails.
//!
//! ```yaml
//! jobs:
//!   train:
//!     type: stream
//!     restart: on_failure          # 3 restarts, 1s backoff doubling up to 1m
//!   serve:
//!     type: stream
//!     restart: {policy: on_failure, max_restarts: 10, backoff: 500ms, max_backoff: 30s}
//! ```
//!
//! A run that ends FAILED (its process exited with an error, or died and was found by the
//! liveness check) starts again after the backoff, until `max_restarts` restarts of the job
//! have been made in its execution; then the job stays FAILED and its execution fails with
//! it. A run that was asked to stop never restarts.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Restart a failed run of the job, with exponential backoff and a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Most restarts per execution (default 3).
    pub max_restarts: u32,
    /// Wait before the first restart (default 1s); each further one waits twice as long.
    pub backoff: Duration,
    /// The longest wait (default 1m).
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The wait before restart number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Full {
    policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_restarts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_backoff: Option<String>,
}

fn duration<E: serde::de::Error>(what: &str, s: &str) -> Result<Duration, E> {
    humantime::parse_duration(s)
        .map_err(|e| E::custom(format!("{what}: '{s}' is not a duration ({e})")))
}

fn from_full<E: serde::de::Error>(f: Full) -> Result<Option<RestartPolicy>, E> {
    match f.policy.as_str() {
        "never" => {
            if f.max_restarts.is_some() || f.backoff.is_some() || f.max_backoff.is_some() {
                return Err(E::custom(
                    "restart policy 'never' takes no max_restarts, backoff or max_backoff",
                ));
            }
            return Ok(None);
        }
        "on_failure" => {}
        other => {
            return Err(E::custom(format!(
                "unknown restart policy '{other}' (known: on_failure, never)"
            )));
        }
    }
    let d = RestartPolicy::default();
    let backoff = match &f.backoff {
        Some(s) => duration("backoff", s)?,
        None => d.backoff,
    };
    let max_backoff = match &f.max_backoff {
        Some(s) => duration("max_backoff", s)?,
        // A backoff above the default cap raises the cap with it.
        None => d.max_backoff.max(backoff),
    };
    if max_backoff < backoff {
        return Err(E::custom("max_backoff must not be below backoff"));
    }
    let p = RestartPolicy {
        max_restarts: f.max_restarts.unwrap_or(d.max_restarts),
        backoff,
        max_backoff,
    };
    Ok(Some(p))
}

/// `restart:` as written in a spec: `on_failure`, `never`, or the full form.
pub(crate) mod spec_form {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        p: &Option<RestartPolicy>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match p {
            None => s.serialize_none(),
            Some(p) => Full {
                policy: "on_failure".into(),
                max_restarts: Some(p.max_restarts),
                backoff: Some(humantime::format_duration(p.backoff).to_string()),
                max_backoff: Some(humantime::format_duration(p.max_backoff).to_string()),
            }
            .serialize(s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RestartPolicy>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Option<RestartPolicy>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("on_failure, never, or {policy, max_restarts, backoff, max_backoff}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                from_full(Full {
                    policy: v.to_string(),
                    max_restarts: None,
                    backoff: None,
                    max_backoff: None,
                })
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                from_full(f)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct J {
        #[serde(default, with = "spec_form", skip_serializing_if = "Option::is_none")]
        restart: Option<RestartPolicy>,
    }

    fn parse(y: &str) -> Result<Option<RestartPolicy>, String> {
        serde_yaml_ng::from_str::<J>(y)
            .map(|j| j.restart)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn forms_parse_and_round_trip() {
        assert_eq!(
            parse("restart: on_failure").unwrap(),
            Some(RestartPolicy::default())
        );
        assert_eq!(parse("restart: never").unwrap(), None);
        assert_eq!(parse("{}").unwrap(), None);
        let p = parse(
            "restart: {policy: on_failure, max_restarts: 5, backoff: 200ms, max_backoff: 1s}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.max_restarts, 5);
        assert_eq!(
            (p.delay(1), p.delay(2), p.delay(3), p.delay(4), p.delay(40)),
            (
                Duration::from_millis(200),
                Duration::from_millis(400),
                Duration::from_millis(800),
                Duration::from_secs(1),
                Duration::from_secs(1)
            )
        );
        let text = serde_yaml_ng::to_string(&J {
            restart: Some(p.clone()),
        })
        .unwrap();
        assert_eq!(parse(&text).unwrap(), Some(p));
        // A backoff above the default cap raises the cap with it.
        let p = parse("restart: {policy: on_failure, backoff: 2m}")
            .unwrap()
            .unwrap();
        assert_eq!(p.delay(1), Duration::from_secs(120));
    }

    #[test]
    fn wrong_forms_are_refused_naming_what() {
        assert!(
            parse("restart: always")
                .unwrap_err()
                .contains("unknown restart policy 'always'")
        );
        assert!(
            parse("restart: {policy: on_failure, retries: 2}")
                .unwrap_err()
                .contains("unknown field `retries`")
        );
        assert!(
            parse("restart: {policy: on_failure, backoff: soon}")
                .unwrap_err()
                .contains("backoff: 'soon' is not a duration")
        );
        assert!(
            parse("restart: {policy: on_failure, backoff: 5s, max_backoff: 1s}")
                .unwrap_err()
                .contains("max_backoff must not be below backoff")
        );
        assert!(parse("restart: {policy: never, max_restarts: 2}").is_err());
    }
}
