-- People and machines that may obtain tokens. Passwords are stored only as argon2 PHC strings.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL UNIQUE
                              CHECK (char_length(username) BETWEEN 1 AND 150 AND username !~ '\s'),
    password_hash text        NOT NULL CHECK (password_hash LIKE '$argon2%'),
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
