//! Control rules: `conditions -> action`, and the stored state that decides when they fire.
//!
//! A condition matches events by (namespace, event type, sender, key), each a pattern where
//! `*` matches any run of characters. The state of a condition is the *newest* matching event
//! it has seen, newest by [`event_order`] rather than by arrival: a model event for version 1
//! that arrives after the one for version 2 is older and changes nothing. A rule is met when
//! its conditions are (all of them for MEET_ALL, one for MEET_ANY):
//!
//! - EQUALS: the newest matching event's value equals the condition's value;
//!   UPDATED: some matching event was seen;
//! - ONCE (the default): additionally, that event is newer than the one consumed when the
//!   rule last fired; REPEATED: no such requirement.
//!
//! Rules are evaluated only on an event that one of their conditions accepted. Firing
//! consumes the newest event of every condition of the rule. Because the decision depends
//! only on this state and the state only moves forward, re-delivering an event, or
//! delivering an older one late, never makes a rule fire twice.

use ferroflow_meta::Event;
use serde::{Deserialize, Serialize};

/// Compare values in one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueCondition {
    /// The newest matching event's value equals the condition's value.
    Equals,
    /// Any matching event.
    Updated,
}

/// Whether a fired rule's events stay usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Life {
    /// Only events newer than the last firing count.
    #[default]
    Once,
    /// Events keep counting after the rule fired.
    Repeated,
}

/// How the conditions of a rule combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConditionType {
    /// Every condition is met.
    #[default]
    MeetAll,
    /// One condition is met.
    MeetAny,
}

/// What a fired rule does to its job (or, for workflow rules, to executions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Start the job if it is not running.
    Start,
    /// Stop the job if it is running.
    Stop,
    /// Stop the job if running, then start it (start it if not running).
    Restart,
    /// Nothing (the rule still consumes its events and shadows later rules).
    None,
}

/// One event condition, resolved to patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCondition {
    /// Namespace pattern.
    pub namespace: String,
    /// Event type pattern.
    pub event_type: String,
    /// Sender pattern.
    pub sender: String,
    /// Key pattern.
    pub key: String,
    /// Expected value (EQUALS).
    pub value: Option<String>,
    /// EQUALS or UPDATED.
    pub value_condition: ValueCondition,
    /// ONCE or REPEATED.
    pub life: Life,
}

impl EventCondition {
    /// Any event of `event_type` with `key`, in any namespace, from any sender.
    pub fn new(event_type: impl Into<String>, key: impl Into<String>) -> Self {
        EventCondition {
            namespace: "*".into(),
            event_type: event_type.into(),
            sender: "*".into(),
            key: key.into(),
            value: None,
            value_condition: ValueCondition::Updated,
            life: Life::Once,
        }
    }

    /// Require this value (EQUALS).
    pub fn equals(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self.value_condition = ValueCondition::Equals;
        self
    }

    /// Set the life.
    pub fn life(mut self, life: Life) -> Self {
        self.life = life;
        self
    }

    /// Does `e` match the namespace, type, sender and key patterns?
    pub fn matches(&self, e: &Event) -> bool {
        glob(&self.namespace, &e.namespace)
            && glob(&self.event_type, &e.event_type)
            && glob(&self.sender, &e.sender)
            && glob(&self.key, &e.key)
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The logical order of an event: (version, offset). Model Center events carry the model
/// version in their value, so a late event about an older version sorts before a newer
/// version's event whatever their offsets; other events are ordered by offset.
pub fn event_order(e: &Event) -> (i64, i64) {
    let version = if e.event_type.starts_with("MODEL_") {
        serde_json::from_str::<serde_json::Value>(&e.value)
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_i64()))
            .unwrap_or(0)
    } else {
        0
    };
    (version, e.offset)
}

/// A rule: conditions, how they combine, and the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The conditions.
    pub conditions: Vec<EventCondition>,
    /// MEET_ALL or MEET_ANY.
    pub condition_type: ConditionType,
    /// What happens when it fires.
    pub action: Action,
}

/// The newest event a condition has accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// [`event_order`] of the event.
    pub order: (i64, i64),
    /// Its value.
    pub value: String,
}

/// Stored state of one condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionState {
    /// Newest matching event.
    pub latest: Option<Seen>,
    /// Order of the event consumed by the last firing.
    pub consumed: Option<(i64, i64)>,
}

/// Stored state of one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// One per condition.
    pub conditions: Vec<ConditionState>,
    /// How many times it fired.
    pub fired: u64,
}

impl Rule {
    /// Record `e` in `state`; true when a condition accepted it as its newest event.
    pub fn observe(&self, state: &mut RuleState, e: &Event) -> bool {
        state
            .conditions
            .resize(self.conditions.len(), ConditionState::default());
        let order = event_order(e);
        let mut accepted = false;
        for (c, s) in self.conditions.iter().zip(state.conditions.iter_mut()) {
            if !c.matches(e) {
                continue;
            }
            if s.latest.as_ref().is_some_and(|l| l.order >= order) {
                continue; // an older or the same event: stored state wins
            }
            s.latest = Some(Seen {
                order,
                value: e.value.clone(),
            });
            accepted = true;
        }
        accepted
    }

    /// Are the conditions met in `state`?
    pub fn is_met(&self, state: &RuleState) -> bool {
        let met = |(c, s): (&EventCondition, &ConditionState)| {
            let Some(latest) = &s.latest else {
                return false;
            };
            let value_ok = match c.value_condition {
                ValueCondition::Updated => true,
                ValueCondition::Equals => c.value.as_deref() == Some(latest.value.as_str()),
            };
            let fresh = match c.life {
                Life::Repeated => true,
                Life::Once => s.consumed.is_none_or(|done| latest.order > done),
            };
            value_ok && fresh
        };
        if state.conditions.len() != self.conditions.len() {
            return false;
        }
        let mut pairs = self.conditions.iter().zip(state.conditions.iter());
        match self.condition_type {
            ConditionType::MeetAll => pairs.all(met),
            ConditionType::MeetAny => pairs.any(met),
        }
    }

    /// Fire: consume every condition's newest event.
    pub fn consume(&self, state: &mut RuleState) {
        for s in &mut state.conditions {
            if let Some(l) = &s.latest {
                s.consumed = Some(l.order);
            }
        }
        state.fired += 1;
    }
}

/// Feed `e` to an ordered rule list and its states: every rule observes it; the first rule
/// that accepted it and is met fires and gives the action.
pub fn evaluate(rules: &[Rule], states: &mut Vec<RuleState>, e: &Event) -> Option<Action> {
    states.resize(rules.len(), RuleState::default());
    let accepted: Vec<bool> = rules
        .iter()
        .zip(states.iter_mut())
        .map(|(r, s)| r.observe(s, e))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        if accepted[i] && rule.is_met(&states[i]) {
            rule.consume(&mut states[i]);
            return Some(rule.action);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(offset: i64, ty: &str, key: &str, value: &str) -> Event {
        Event {
            offset,
            key: key.into(),
            value: value.into(),
            event_type: ty.into(),
            namespace: "default".into(),
            sender: "s".into(),
            context: None,
            create_time: 0,
        }
    }

    fn rule(conds: Vec<EventCondition>, ct: ConditionType, action: Action) -> Rule {
        Rule {
            conditions: conds,
            condition_type: ct,
            action,
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("*", ""));
        assert!(glob("MODEL_*", "MODEL_DEPLOYED"));
        assert!(!glob("MODEL_*", "JOB_STATUS_CHANGED"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abde"));
        assert!(glob("wf.*", "wf.train"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn equals_looks_at_the_newest_value() {
        let r = rule(
            vec![EventCondition::new("T", "k").equals("go")],
            ConditionType::MeetAll,
            Action::Start,
        );
        let mut st = vec![];
        assert_eq!(
            evaluate(std::slice::from_ref(&r), &mut st, &ev(1, "T", "k", "wait")),
            None
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&r), &mut st, &ev(2, "T", "k", "go")),
            Some(Action::Start)
        );
        // ONCE: the same value again is a newer event and fires again.
        assert_eq!(
            evaluate(std::slice::from_ref(&r), &mut st, &ev(3, "T", "k", "go")),
            Some(Action::Start)
        );
        // Re-delivering an event already seen changes nothing.
        assert_eq!(
            evaluate(std::slice::from_ref(&r), &mut st, &ev(3, "T", "k", "go")),
            None
        );
        assert_eq!(st[0].fired, 2);
    }

    #[test]
    fn meet_all_once_fires_once_in_either_order() {
        let r = rule(
            vec![EventCondition::new("A", "*"), EventCondition::new("B", "*")],
            ConditionType::MeetAll,
            Action::Start,
        );
        for order in [["A", "B"], ["B", "A"]] {
            let mut st = vec![];
            let fired: Vec<_> = order
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    evaluate(
                        std::slice::from_ref(&r),
                        &mut st,
                        &ev(i as i64 + 1, t, "k", ""),
                    )
                })
                .collect();
            assert_eq!(fired, vec![Action::Start]);
            // One new A alone does not fire again: B was consumed.
            assert_eq!(
                evaluate(std::slice::from_ref(&r), &mut st, &ev(10, "A", "k", "")),
                None
            );
            assert_eq!(
                evaluate(std::slice::from_ref(&r), &mut st, &ev(11, "B", "k", "")),
                Some(Action::Start)
            );
        }
    }

    #[test]
    fn repeated_conditions_stay_met() {
        let r = rule(
            vec![
                EventCondition::new("A", "*").life(Life::Repeated),
                EventCondition::new("B", "*"),
            ],
            ConditionType::MeetAll,
            Action::Restart,
        );
        let mut st = vec![];
        let rs = std::slice::from_ref(&r);
        assert_eq!(evaluate(rs, &mut st, &ev(1, "A", "k", "")), None);
        assert_eq!(
            evaluate(rs, &mut st, &ev(2, "B", "k", "")),
            Some(Action::Restart)
        );
        // A is still met (REPEATED), a new B fires again.
        assert_eq!(
            evaluate(rs, &mut st, &ev(3, "B", "k", "")),
            Some(Action::Restart)
        );
        // A new A alone: B was consumed (ONCE).
        assert_eq!(evaluate(rs, &mut st, &ev(4, "A", "k", "")), None);
    }

    #[test]
    fn meet_any_and_first_rule_wins() {
        let stop = rule(
            vec![EventCondition::new("S", "*")],
            ConditionType::MeetAny,
            Action::Stop,
        );
        let start = rule(
            vec![EventCondition::new("S", "*"), EventCondition::new("G", "*")],
            ConditionType::MeetAny,
            Action::Start,
        );
        let rules = [stop, start];
        let mut st = vec![];
        assert_eq!(
            evaluate(&rules, &mut st, &ev(1, "S", "k", "")),
            Some(Action::Stop)
        );
        assert_eq!(
            evaluate(&rules, &mut st, &ev(2, "G", "k", "")),
            Some(Action::Start)
        );
        assert_eq!(st[0].fired, 1);
        assert_eq!(st[1].fired, 1);
    }

    #[test]
    fn a_late_event_about_an_older_model_version_never_fires() {
        let r = rule(
            vec![EventCondition::new("MODEL_GENERATED", "churn")],
            ConditionType::MeetAll,
            Action::Start,
        );
        let rs = std::slice::from_ref(&r);
        let mut st = vec![];
        let v = |n: i64| format!("{{\"model\":\"churn\",\"version\":{n}}}");
        assert_eq!(
            evaluate(rs, &mut st, &ev(5, "MODEL_GENERATED", "churn", &v(2))),
            Some(Action::Start)
        );
        assert_eq!(
            evaluate(rs, &mut st, &ev(6, "MODEL_GENERATED", "churn", &v(1))),
            None
        );
        assert_eq!(
            evaluate(rs, &mut st, &ev(7, "MODEL_GENERATED", "churn", &v(3))),
            Some(Action::Start)
        );
        assert_eq!(st[0].fired, 2);
    }
}
