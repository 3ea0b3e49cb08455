-- Three objects as Chrononaut 0.1 recorded them: each row of a *_history table holds
-- the state an object had before a change, with the time and the change info of that
-- change. (Times are UTC.)

-- Todo 7: created, renamed by Ada on 2 March, marked done by Bob on 3 March.
INSERT INTO todo (id, title, done, version) VALUES (7, 'Write the docs', true, 2);
INSERT INTO todo_history (id, title, done, version, changed, change_info) VALUES
    (7, 'Write doc', false, 0, '2021-03-02 10:00',
     '{"user_id": "ada", "extra": {"rationale": "typo"}}'),
    (7, 'Write the docs', false, 1, '2021-03-03 09:00', '{"user_id": "bob"}');

-- Todo 8: created, renamed by Ada on 1 February, deleted by Bob on 5 February.
INSERT INTO todo_history (id, title, done, version, changed, change_info) VALUES
    (8, 'Buy milk', false, 0, '2021-02-01 08:00', '{"user_id": "ada"}'),
    (8, 'Buy oat milk', false, 1, '2021-02-05 18:00',
     '{"user_id": "bob", "extra": {"rationale": "bought"}}');

-- Animal 1 is a Dog (joined-table inheritance): its states are split between
-- animal_history and dog_history. Ada changed its breed on 1 June.
INSERT INTO animal (id, kind, name, version) VALUES (1, 'dog', 'Rex', 1);
INSERT INTO dog (id, breed) VALUES (1, 'Collie');
INSERT INTO animal_history (id, kind, name, version, changed, change_info) VALUES
    (1, 'dog', 'Rex', 0, '2020-06-01 12:00', '{"user_id": "ada"}');
INSERT INTO dog_history (id, breed, version) VALUES (1, 'Mutt', 0);
