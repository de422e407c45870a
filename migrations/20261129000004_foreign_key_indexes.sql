-- Every foreign key that cascades or is checked on delete needs an index on the referencing column, or
-- deleting one customer, account or conversation scans whole tables once per deleted row (quadratic:
-- removing an account with tens of thousands of messages took minutes).
CREATE INDEX conversations_credential ON conversations (credential_id);
CREATE INDEX replies_conversation ON replies (conversation_id);
CREATE INDEX messages_reply ON messages (reply_id) WHERE reply_id IS NOT NULL;
