//! Request bodies, query strings and answers of the HTTP API that are not store records.
//! The server's handlers take these types and the [`Client`](crate::Client) sends them, so
//! the two cannot drift apart. (Answers that are records, such as
//! [`Event`](ferroflow_meta::Event) or [`WorkflowInfo`](ferroflow_workflow::service::WorkflowInfo),
//! are the store's and the workflow service's own types.)

use std::borrow::Cow;

use ferroflow_meta::{ApiToken, EventFilter, ModelStage, Role};
use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `invalid_transition`, ...).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub code: Cow<'static, str>,
    /// What went wrong, for a person.
    pub message: String,
    /// Extra structured detail, when there is some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The newest event's offset.
    pub latest_offset: i64,
}

// Query strings (the `*Query` structs and `Page`): serde_urlencoded leaves out a `None`
// field by itself.

/// Event query parameters: comma-separated lists filter; `after` is exclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EventQuery {
    /// Only events with a greater offset (default 0).
    pub after: Option<i64>,
    /// Most events returned (default 1000, at most 10000).
    pub limit: Option<u32>,
    /// Comma-separated keys.
    pub keys: Option<String>,
    /// Comma-separated event types.
    pub event_types: Option<String>,
    /// Comma-separated namespaces.
    pub namespaces: Option<String>,
    /// Comma-separated senders.
    pub senders: Option<String>,
    /// listen: how long to wait for a first event, in ms (default 30000, at most 60000).
    pub timeout_ms: Option<u64>,
}

impl EventQuery {
    /// The store filter these parameters describe (empty list items are ignored).
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            keys: split_list(self.keys.as_deref()),
            event_types: split_list(self.event_types.as_deref()),
            namespaces: split_list(self.namespaces.as_deref()),
            senders: split_list(self.senders.as_deref()),
        }
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub fn split_list(list: Option<&str>) -> Vec<String> {
    list.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

/// A model to register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewModel {
    /// Unique name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// Paging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct Page {
    /// Skip this many (default 0).
    pub offset: Option<u32>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A model's editable fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelUpdate {
    /// The new description.
    pub description: String,
}

/// Stage filter of a version listing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct StageQuery {
    /// Only versions in this stage.
    pub stage: Option<String>,
}

/// A stage to move a version to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageChange {
    /// The stage.
    pub stage: ModelStage,
}

/// Record listing filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RecordQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only records owned by this parent.
    pub parent: Option<String>,
    /// Skip this many (default 0).
    pub offset: Option<u32>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A new body for a record, optionally only if the record is still at `revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordUpdate {
    /// The new body.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: serde_json::Value,
    /// Only if the record is still at this revision.
    pub revision: Option<i64>,
}

/// Where to store an artifact, and what it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ArtifactQuery {
    /// What the artifact is (model, dataset, report...; default `file`).
    pub kind: Option<String>,
}

/// A token to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// Unique name of its holder.
    pub name: String,
    /// viewer, operator or admin.
    pub role: Role,
}

/// A created token: the secret is shown this once and never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    /// Its name, role and creation time.
    #[serde(flatten)]
    pub token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// A workflow spec to submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitRequest {
    /// The YAML spec.
    pub spec: String,
    /// Its file name, for error messages (default `spec.yaml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Directory relative paths in the spec resolve against, on the machine that runs the
    /// jobs (the CLI sends the spec file's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
}

/// Workflow listing filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct WorkflowQuery {
    /// Only this project.
    pub project: Option<String>,
}

/// A started execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Started {
    /// Project.
    pub project: String,
    /// The new execution's name.
    pub execution: String,
}

/// Which run's log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LogQuery {
    /// The run (default: the newest).
    pub attempt: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_as_the_server_decodes_them() {
        let q = EventQuery {
            after: Some(7),
            keys: Some("a b,c&d".into()),
            timeout_ms: Some(1500),
            ..Default::default()
        };
        let text = serde_urlencoded::to_string(&q).unwrap();
        assert_eq!(text, "after=7&keys=a+b%2Cc%26d&timeout_ms=1500");
        let back: EventQuery = serde_urlencoded::from_str(&text).unwrap();
        assert_eq!(back, q);
        assert_eq!(back.filter().keys, vec!["a b", "c&d"]);
        assert_eq!(
            serde_urlencoded::to_string(EventQuery::default()).unwrap(),
            ""
        );
    }

    #[test]
    fn a_created_token_flattens_its_record() {
        let t: CreatedToken = serde_json::from_str(
            r#"{"name":"ci","role":"operator","create_time":5,"secret":"fft_x"}"#,
        )
        .unwrap();
        assert_eq!(t.token.name, "ci");
        assert_eq!(t.token.role, Role::Operator);
        assert_eq!(t.secret, "fft_x");
    }

    #[test]
    fn list_items_are_trimmed_and_empty_ones_dropped() {
        assert_eq!(split_list(Some(" a, ,b,")), vec!["a", "b"]);
        assert!(split_list(None).is_empty());
    }
}
