// Injection attempts: (what, the text). Every one must be refused in every
// field that ends up in CQL, a Kafka request or an object name. Shared by
// the unit tests of api/src/validate.rs and the e2e test
// operator_admission, which sends the same table to the apiserver.
&[
    ("quote and statement", "x\"; DROP KEYSPACE x; --"),
    ("semicolon", "users; DROP TABLE users"),
    ("single quotes", "users' OR '1'='1"),
    ("line comment", "users -- x"),
    ("block comment", "users/**/"),
    ("double-quoted", "\"users\""),
    ("backtick", "`users`"),
    ("space", "user name"),
    ("newline", "users\nDROP"),
    ("NUL byte", "users\u{0}"),
    ("zero-width space", "users\u{200b}"),
    ("accented letters", "ünïcode"),
    ("CJK", "用户"),
    ("right-to-left override", "users\u{202e}"),
    ("fullwidth semicolon", "users；drop"),
    ("dot path", "../etc"),
    ("empty", ""),
    ("leading digit", "1users"),
    (
        "too long",
        "a_very_long_identifier_that_goes_past_forty_eight_chars",
    ),
]
