//! What moves a conversation from one [`ConversationState`] to another: one [`Transition`] per cause,
//! each naming the states it may start from. Every change is applied as one
//! `UPDATE … WHERE state = ANY(<from>)`, so a cause that does not apply (a person's reply in a thread
//! another app owns) changes nothing instead of overriding a stronger state.
//!
//! `docs/conversation.md` carries [`markdown_table`]'s output; a test keeps the two equal. [`apply`] is
//! the one statement that changes a conversation's state, for the worker and ingest alike.

use crate::states::ConversationState::{self, Bot, Elsewhere, Escalated, Paused};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One cause of a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Stored as the conversation's `state_reason`, and the metric label.
    pub cause: &'static str,
    /// The states it applies in.
    pub from: &'static [ConversationState],
    /// The state it leads to.
    pub to: ConversationState,
    /// What happened, for the documentation.
    pub when: &'static str,
}

const ANY: &[ConversationState] = ConversationState::ALL;

/// A person of the business answered in the Instagram app (an echo we did not send): the bot steps
/// back for `HUMAN_PAUSE_MINUTES`. Not over an escalation or another app's thread: those are stronger.
pub const HUMAN_REPLY: Transition = Transition {
    cause: "human_reply",
    from: &[Bot, Paused],
    to: Paused,
    when: "a person answered in the Instagram app (an echo we did not send)",
};

/// A person answered through `POST /api/conversations/{id}/messages`: as [`HUMAN_REPLY`], and an
/// escalated conversation being answered stays escalated.
pub const OPERATOR_REPLY: Transition = Transition {
    cause: "operator_reply",
    from: &[Bot, Paused],
    to: Paused,
    when: "a person answered through `POST /api/conversations/{id}/messages`",
};

/// An operator paused the bot (`POST /api/conversations/{id}/pause`).
pub const OPERATOR_PAUSE: Transition = Transition {
    cause: "operator_pause",
    from: &[Bot, Paused, Escalated],
    to: Paused,
    when: "an operator paused the bot (`POST /api/conversations/{id}/pause`)",
};

/// The AI called `handoff_to_human`.
pub const HANDOFF: Transition = Transition {
    cause: "handoff",
    from: &[Bot],
    to: Escalated,
    when: "the AI called `handoff_to_human` (the customer asked for a person, or the AI cannot help)",
};

/// A person resumed the bot (`POST /api/conversations/{id}/resume`).
pub const RESUME: Transition = Transition {
    cause: "resumed",
    from: ANY,
    to: Bot,
    when: "a person resumed the bot (`POST /api/conversations/{id}/resume`; we take the thread back if another app has it)",
};

/// Another app passed the thread to us (`pass_thread_control` naming our app).
pub const THREAD_PASSED_TO_US: Transition = Transition {
    cause: "thread_passed_to_us",
    from: ANY,
    to: Bot,
    when: "`pass_thread_control` gave the thread to our app (e.g. the Page inbox marked it done)",
};

/// The thread went to another app: passed to it, taken by it, or given to it on its request.
pub const THREAD_TO_OTHER_APP: Transition = Transition {
    cause: "thread_to_other_app",
    from: ANY,
    to: Elsewhere,
    when: "`pass_thread_control` to another app, `take_thread_control` by another app, or we passed the thread on a `request_thread_control`",
};

/// A customer message arrived on the standby channel: another app owns the thread.
pub const STANDBY: Transition = Transition {
    cause: "standby",
    from: &[Bot, Paused],
    to: Elsewhere,
    when: "a customer message arrived in `standby[]` (another app owns the thread)",
};

/// The Send API refused a send because another app controls the thread.
pub const SEND_REFUSED: Transition = Transition {
    cause: "not_thread_owner",
    from: ANY,
    to: Elsewhere,
    when: "the Send API answered \"another app is controlling this thread\" (100/2534037, 2018300)",
};

/// Every transition, in the documentation's order.
pub const ALL: [Transition; 9] = [
    HUMAN_REPLY,
    OPERATOR_REPLY,
    OPERATOR_PAUSE,
    HANDOFF,
    RESUME,
    THREAD_PASSED_TO_US,
    THREAD_TO_OTHER_APP,
    STANDBY,
    SEND_REFUSED,
];

impl Transition {
    /// Whether it applies to a conversation in `state`.
    pub fn applies_to(&self, state: ConversationState) -> bool {
        self.from.contains(&state)
    }
}

impl ConversationState {
    /// Why a customer message is not answered in this state (the `status_reason` it is stored with, and
    /// the metric label); `None` for [`ConversationState::Bot`].
    pub fn quiet_reason(self) -> Option<&'static str> {
        match self {
            Bot => None,
            Paused => Some("human_takeover"),
            Escalated => Some("escalated"),
            Elsewhere => Some("thread_elsewhere"),
        }
    }
}

/// Where a state change leads, besides the state: how long a pause lasts, which app owns the thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    /// For `paused`: until when (`None`: until resumed). A person's reply never shortens a longer pause
    /// (nor one until resumed).
    pub paused_until: Option<DateTime<Utc>>,
    /// For `elsewhere`: the app that owns the thread, when Meta said.
    pub thread_owner: Option<&'a str>,
}

/// The state in force, as SQL over a `conversations` row: a pause whose time has passed is the bot's turn
/// again (it is not rewritten when it expires). Readers and [`apply`] all use it, so an expired pause
/// never blocks a change that applies to `bot`.
pub const STATE_NOW: &str =
    "CASE WHEN state = 'paused' AND ai_paused_until <= now() THEN 'bot' ELSE state END";

/// Applies `transition` to the conversation if its state in force ([`STATE_NOW`]) allows; returns
/// whether it changed. One statement, guarded by the states it may come from, so a racing change of
/// state is never undone.
pub async fn apply(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    transition: &Transition,
    change: Change<'_>,
) -> sqlx::Result<bool> {
    let changed = sqlx::query(&format!(
        "UPDATE conversations SET state = $2, state_reason = $3, state_changed_at = now(), updated_at = now(),
             ai_paused_until = CASE
                 WHEN $2 <> 'paused' THEN NULL
                 WHEN $6 AND state = 'paused' AND ai_paused_until IS NULL THEN NULL
                 WHEN $6 AND state = 'paused' THEN GREATEST(ai_paused_until, $4)
                 ELSE $4 END,
             thread_owner_app_id = CASE WHEN $2 = 'elsewhere' THEN $5 END
         WHERE id = $1 AND ({STATE_NOW}) = ANY($7)"
    ))
    .bind(id)
    .bind(transition.to)
    .bind(transition.cause)
    .bind(change.paused_until)
    .bind(change.thread_owner)
    .bind(transition == &HUMAN_REPLY || transition == &OPERATOR_REPLY)
    .bind(transition.from)
    .execute(executor)
    .await?;
    Ok(changed.rows_affected() > 0)
}

/// The transition table as Markdown, for `docs/conversation.md`.
pub fn markdown_table() -> String {
    let mut table = String::from("| cause (`state_reason`) | from | to | when |\n|---|---|---|---|\n");
    for t in ALL {
        let from = if t.from == ANY {
            "any".to_owned()
        } else {
            t.from
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!("| `{}` | {from} | `{}` | {} |\n", t.cause, t.to, t.when));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bot_state_answers_and_every_other_state_has_a_way_back() {
        assert_eq!(Bot.quiet_reason(), None);
        for state in ConversationState::ALL.iter().filter(|s| **s != Bot) {
            assert!(state.quiet_reason().is_some());
            assert!(RESUME.applies_to(*state), "{state} can be resumed");
        }
    }

    #[test]
    fn a_person_in_the_app_does_not_undo_an_escalation_or_another_apps_thread() {
        assert!(!HUMAN_REPLY.applies_to(Escalated));
        assert!(!HUMAN_REPLY.applies_to(Elsewhere));
        assert!(HANDOFF.applies_to(Bot) && !HANDOFF.applies_to(Paused));
    }

    #[test]
    fn the_documentation_carries_the_table() {
        let doc = include_str!("../../docs/conversation.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/conversation.md must contain, verbatim:\n{}",
            markdown_table()
        );
    }
}
