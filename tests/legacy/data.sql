-- Live rows and 0.1 history for the conversion tests. Times are UTC; the comments give
-- each object's story. tests/test_data_converters.py states the snapshots expected.

-- Todo 1: created, renamed, secret changed (hidden), marked done; still live at version 3.
INSERT INTO todo (id, title, text, done, priority, due_at, starred, secret, version)
VALUES (1, 'Write docs', 'all of them', true, 'HIGH', '2021-03-01 09:00:00+00', true, 's3', 3);
INSERT INTO todo_history (id, title, text, done, priority, due_at, starred, secret, version,
                          changed, change_info) VALUES
    (1, 'Write doc', 'all of them', false, 'LOW', '2021-03-01 09:00:00+00', false, 's1', 0,
     '2021-01-02 10:00:00',
     '{"user_id": "ada@example.org", "remote_addr": "10.0.0.1", "extra": {"rationale": "typo"}}'),
    (1, 'Write docs', 'all of them', false, 'LOW', '2021-03-01 09:00:00+00', false, 's1', 1,
     '2021-01-03 11:30:00',
     '{"user_id": "bob@example.org", "remote_addr": null, "hidden_cols_changed": ["secret"]}'),
    (1, 'Write docs', 'all of them', false, 'HIGH', '2021-03-01 09:00:00+00', true, 's2', 2,
     '2021-01-04 12:45:30.250000', '{"user_id": null, "remote_addr": "10.0.0.2"}');

-- Todo 2: created, edited once, then deleted: no live row.
INSERT INTO todo_history (id, title, text, done, priority, due_at, starred, secret, version,
                          changed, change_info) VALUES
    (2, 'Buy milk', null, false, null, null, false, null, 0, '2021-02-01 08:00:00',
     '{"user_id": "ada@example.org", "remote_addr": null}'),
    (2, 'Buy oat milk', null, false, null, null, false, null, 1, '2021-02-05 18:00:00',
     '{"user_id": "bob@example.org", "remote_addr": null, "extra": {"rationale": "done"}}');

-- Todo 3: never changed, from before the mixin (NULL version). Todo 4: never changed.
INSERT INTO todo (id, title, done, version) VALUES (3, 'Old task', false, NULL);
INSERT INTO todo (id, title, done, version) VALUES (4, 'New task', false, 0);

-- Tickets: text keys and created_at. 'b-...' was created before the version column
-- existed: its first history row has a NULL version.
INSERT INTO ticket (uuid, title, created_at, version) VALUES
    ('a-7f3c', 'Printer on fire', '2022-05-01 07:00:00+00', 1),
    ('b-19d0', 'Coffee machine', '2022-04-01 06:00:00+00', 2),
    ('c-0e21', 'Never touched', '2022-06-01 05:00:00+00', NULL);
INSERT INTO ticket_history (uuid, title, created_at, version, changed, change_info) VALUES
    ('a-7f3c', 'Printer smoking', '2022-05-01 07:00:00+00', 0, '2022-05-01 07:30:00+00',
     '{"user_id": "ada@example.org", "remote_addr": null}'),
    ('b-19d0', 'Coffee', '2022-04-01 06:00:00+00', NULL, '2022-04-02 06:00:00+00', null),
    ('b-19d0', 'Coffee machine!', '2022-04-01 06:00:00+00', 1, '2022-04-03 06:00:00+00',
     '{"user_id": "bob@example.org", "remote_addr": null}');

-- Translations: composite keys that share their first column.
INSERT INTO translation (locale, slug, text, version) VALUES
    ('de', 'hello', 'Hallo', 1),
    ('en', 'hello', 'Hello', 0);
INSERT INTO translation_history (locale, slug, text, version, changed, change_info) VALUES
    ('de', 'hello', 'Tag', 0, '2023-01-01 00:00:00+00', '{"user_id": "ada@example.org"}'),
    ('de', 'bye', 'Tschuess', 0, '2023-01-02 00:00:00+00', '{"user_id": "ada@example.org"}');

-- Animals: dog 1 renamed and re-bred (both tables changed), cat 2 (single-table subclass)
-- moved indoors, plain animal 3 never changed.
INSERT INTO animal (id, kind, name, indoor, version) VALUES
    (1, 'dog', 'Rex II', null, 2),
    (2, 'cat', 'Tom', true, 1),
    (3, 'animal', 'Blob', null, 0);
INSERT INTO dog (id, breed) VALUES (1, 'Collie');
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (1, 'dog', 'Rex', null, 0, '2020-06-01 12:00:00+00', '{"user_id": "ada@example.org"}'),
    (1, 'dog', 'Rex II', null, 1, '2020-06-02 12:00:00+00', '{"user_id": "bob@example.org"}'),
    (2, 'cat', 'Tom', false, 0, '2020-07-01 12:00:00+00', '{"user_id": "ada@example.org"}');
INSERT INTO dog_history (id, breed, version) VALUES (1, 'Mutt', 0), (1, 'Mutt', 1);

INSERT INTO legacy (id, name, version) VALUES (1, 'new name', 1);
INSERT INTO legacy_old (id, name, version, changed, change_info) VALUES
    (1, 'old name', 0, '2019-09-09 09:09:09+00', '{"user_id": null, "remote_addr": null}');
