-- Who may do what, and revocation. A token carries its user's roles and token version; a
-- password change, a deactivation, a revoked role or "sign out everywhere" bumps the version,
-- which every request and every refresh checks.
ALTER TABLE users
    ADD COLUMN roles text[] NOT NULL DEFAULT '{}'
        CHECK (roles <@ ARRAY['producer', 'analyst', 'admin']::text[]),
    ADD COLUMN token_version integer NOT NULL DEFAULT 1;

-- Before roles existed every user could post and read; they keep that, and no one is an admin
-- until granted (eventstream-admin grant).
UPDATE users SET roles = ARRAY['producer', 'analyst'];

-- One row per refresh token issued. A refresh token is used once: using it issues the next one
-- of the same family (one login); a used token presented again means it was stolen, and the
-- whole family is revoked.
CREATE TABLE refresh_tokens (
    id         uuid        PRIMARY KEY,
    family     uuid        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user_expiry_idx ON refresh_tokens (user_id, expires_at);

-- Failed logins per username and per client address, in a sliding window; a key that fails too
-- often is locked until `locked_until`, and its logins are refused before any password is hashed.
CREATE TABLE login_failures (
    scope             text        NOT NULL CHECK (scope IN ('username', 'client')),
    key               text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200),
    failures          integer     NOT NULL CHECK (failures > 0),
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz,
    PRIMARY KEY (scope, key)
);
