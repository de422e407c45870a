-- Tenants, their connected Instagram accounts, conversations and messages.
-- Idempotency lives here: unique keys make every redelivery (Meta's or RabbitMQ's) a no-op.

CREATE TABLE customers (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    -- The business's instructions to its AI assistant.
    system_prompt text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instagram_credentials (
    id               uuid PRIMARY KEY,
    customer_id      uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- 'instagram' (webhook object "instagram") or 'messenger' (object "page").
    channel          text NOT NULL DEFAULT 'instagram' CHECK (channel IN ('instagram', 'messenger')),
    -- The Instagram professional account id: webhook entry.id. In clear: it is a routing key, not a secret.
    account_id       text NOT NULL UNIQUE,
    page_id          text,
    username         text,
    -- AES-256-GCM ciphertext "v1.<key id>.<base64>", the credential id as associated data.
    access_token_enc text NOT NULL,
    token_key_id     text NOT NULL,
    token_expires_at timestamptz,
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'expiring', 'reauth_required', 'disconnected')),
    status_reason    text,
    -- Meta throttled this account: no worker sends before this instant.
    send_paused_until timestamptz,
    last_webhook_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instagram_credentials_customer ON instagram_credentials (customer_id);
CREATE INDEX instagram_credentials_page ON instagram_credentials (page_id);

CREATE TABLE conversations (
    id                uuid PRIMARY KEY,
    customer_id       uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    credential_id     uuid NOT NULL REFERENCES instagram_credentials (id) ON DELETE CASCADE,
    channel           text NOT NULL,
    account_id        text NOT NULL,
    external_user_id  text NOT NULL,
    external_username text,
    -- A human answered from the Instagram app: the AI stays quiet until then (NULL: not paused).
    ai_paused_until   timestamptz,
    -- One worker at a time produces replies; a crashed holder's lease simply expires.
    lease_owner       uuid,
    lease_expires_at  timestamptz,
    last_inbound_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, account_id, external_user_id)
);
CREATE INDEX conversations_customer ON conversations (customer_id, updated_at DESC);

-- A reply: one AI answer to one or more inbound messages, sent as one or more chunks.
CREATE TABLE replies (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id                  uuid PRIMARY KEY,
    conversation_id     uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    channel             text NOT NULL,
    -- Meta's message id (mid). NULL only for an outbound chunk Meta has not acknowledged yet.
    external_message_id text,
    direction           text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- customer: the Instagram user; ai: our reply; human: someone answering from the Instagram app.
    author              text NOT NULL CHECK (author IN ('customer', 'ai', 'human')),
    kind                text NOT NULL,
    text                text,
    raw                 jsonb,
    -- Meta's timestamp: the order the customer wrote in (delivery order is not guaranteed).
    meta_timestamp      timestamptz NOT NULL,
    -- inbound: pending (awaits a reply), answered, ignored (recorded only), failed.
    -- outbound: queued, sending, sent, delivered (echo seen), parked (token dead), failed.
    status              text NOT NULL,
    status_reason       text,
    reply_id            uuid REFERENCES replies (id),
    chunk_index         integer,
    reactions           jsonb NOT NULL DEFAULT '[]',
    deleted_at          timestamptz,
    edited_at           timestamptz,
    -- When a send was last attempted: an old 'sending' chunk with no echo was not delivered.
    send_attempted_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, external_message_id)
);
CREATE INDEX messages_conversation_time ON messages (conversation_id, meta_timestamp, created_at);
CREATE INDEX messages_pending ON messages (conversation_id) WHERE status IN ('pending', 'queued', 'sending');

-- Events we received but could not attribute (unknown account, dashboard tests): kept, counted, acked.
CREATE TABLE unrouted_events (
    id         uuid PRIMARY KEY,
    object     text NOT NULL,
    entry_id   text NOT NULL,
    kind       text NOT NULL,
    raw        jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
