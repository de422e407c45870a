//! What a reply answers and with what: the reply policy applied to a burst, and the AI's input.

use crate::ai::ChatMessage;
use crate::store::credentials::Credential;
use crate::store::work;
use omnidm_shared::policy::Decision;
use omnidm_shared::states::Author;
use uuid::Uuid;

/// What the reply pass does with a burst of pending messages, by the business's reply policy.
pub(super) struct Plan<'a> {
    /// Messages the AI answers, in order.
    pub(super) for_ai: Vec<&'a work::Pending>,
    /// Fixed texts to send first (one per distinct text, in order).
    pub(super) fixed: Vec<String>,
    /// Every message this reply answers (AI and fixed).
    pub(super) answered: Vec<Uuid>,
    /// Messages the policy now says to record only.
    pub(super) recorded: Vec<Uuid>,
}

impl<'a> Plan<'a> {
    pub(super) fn of(credential: &Credential, pending: &'a [work::Pending]) -> Self {
        let mut plan = Plan {
            for_ai: Vec::new(),
            fixed: Vec::new(),
            answered: Vec::new(),
            recorded: Vec::new(),
        };
        for message in pending {
            match credential.reply_policy.decide(message.kind) {
                Decision::Ai => {
                    plan.for_ai.push(message);
                    plan.answered.push(message.id);
                }
                Decision::Reply(text) => {
                    if !plan.fixed.contains(&text) {
                        plan.fixed.push(text);
                    }
                    plan.answered.push(message.id);
                }
                Decision::Record => plan.recorded.push(message.id),
            }
        }
        plan
    }
}

/// The AI's input: the system prompt, the conversation so far, then exactly the messages this reply
/// answers (the same set `create_replies` marks answered, so nothing is answered twice or skipped).
pub(super) fn prompt(
    system_prompt: &str,
    history: Vec<work::HistoryLine>,
    answering: &[&work::Pending],
) -> Vec<ChatMessage> {
    let mut prompt = Vec::with_capacity(history.len() + answering.len() + 1);
    if !system_prompt.trim().is_empty() {
        prompt.push(ChatMessage {
            role: "system".into(),
            content: system_prompt.to_owned(),
        });
    }
    prompt.extend(history.into_iter().map(|line| {
        ChatMessage {
            role: if line.author == Author::Customer {
                "user"
            } else {
                "assistant"
            }
            .into(),
            content: line.text,
        }
    }));
    prompt.extend(answering.iter().filter_map(|p| {
        p.text.clone().map(|content| ChatMessage {
            role: "user".into(),
            content,
        })
    }));
    prompt
}
