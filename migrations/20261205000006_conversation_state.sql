-- Who speaks, and when. A conversation's state (shared::states::ConversationState, docs/conversation.md),
-- the business's reply policy and escalation settings, Meta message ids unique per account instead of
-- globally, an outbox for the notifications we send businesses, and CHECK constraints so every stored
-- state is one the code knows (a test compares them with the Rust enums).

ALTER TABLE conversations
    -- bot: the AI answers; paused: a person answered or an operator paused it (until ai_paused_until,
    -- NULL: until resumed); escalated: handed to a person; elsewhere: another app owns the thread.
    ADD COLUMN state text NOT NULL DEFAULT 'bot'
        CONSTRAINT conversations_state_known CHECK (state IN ('bot', 'paused', 'escalated', 'elsewhere')),
    -- Why it entered that state (human_reply, operator, handoff, thread_passed, …), for the dashboard.
    ADD COLUMN state_reason text,
    ADD COLUMN state_changed_at timestamptz,
    -- The app that owns the thread under Meta's Handover Protocol while the state is 'elsewhere'.
    ADD COLUMN thread_owner_app_id text;

-- A pause that is still running was the only state before this one.
UPDATE conversations
SET state = 'paused', state_reason = 'human_reply', state_changed_at = updated_at
WHERE ai_paused_until > now();

-- Meta's message ids are unique per account, not globally: when two of our businesses' accounts write to
-- each other, one message is an inbound DM of one and an echo of the other, under the same mid.
ALTER TABLE messages ADD COLUMN account_id text;
UPDATE messages m SET account_id = c.account_id FROM conversations c WHERE c.id = m.conversation_id;
ALTER TABLE messages ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE messages DROP CONSTRAINT messages_channel_external_message_id_key;
ALTER TABLE messages ADD CONSTRAINT messages_account_mid_key UNIQUE (account_id, external_message_id);
ALTER TABLE messages ADD CONSTRAINT messages_status_known CHECK (status IN (
    'pending', 'answered', 'ignored', 'failed', 'queued', 'sending', 'sent', 'delivered', 'parked'));

ALTER TABLE customers
    -- Overrides of the default reply policy (shared::policy::ReplyPolicy's JSON); {} keeps every default.
    ADD COLUMN reply_policy jsonb NOT NULL DEFAULT '{}',
    -- Sent to the customer instead of the AI's text when the conversation is handed to a person.
    ADD COLUMN handoff_message text,
    -- Where we POST notifications (escalations); NULL: none.
    ADD COLUMN notify_url text,
    -- The notifications' HMAC key, AES-256-GCM encrypted like tokens (bound to the customer's id).
    ADD COLUMN notify_secret_enc text,
    -- Answer Messenger DMs of a Page-linked account (off: they are not stored at all).
    ADD COLUMN messenger_enabled boolean NOT NULL DEFAULT false,
    -- Honour another app's request_thread_control by passing it the thread.
    ADD COLUMN pass_thread_on_request boolean NOT NULL DEFAULT true,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Notifications to businesses, written in the transaction that decides them and delivered by the workers
-- with retries and backoff: the reply path never waits for a business's server.
CREATE TABLE notifications (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    conversation_id uuid REFERENCES conversations (id) ON DELETE CASCADE,
    event           text NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- Given up after the last attempt (last_error says why).
    failed_at       timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notifications_customer ON notifications (customer_id);
CREATE INDEX notifications_conversation ON notifications (conversation_id);
