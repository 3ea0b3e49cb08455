-- What a still-running 0.1 application writes after the first conversion: todo 4 is
-- renamed twice, todo 3 (NULL version) is deleted.
INSERT INTO todo_history (id, title, done, version, changed, change_info) VALUES
    (4, 'New task', false, 0, now() AT TIME ZONE 'UTC', '{"user_id": "ada@example.org"}'),
    (4, 'New task!', false, 1, now() AT TIME ZONE 'UTC' + interval '1 second',
     '{"user_id": "ada@example.org"}'),
    (3, 'Old task', false, 0, now() AT TIME ZONE 'UTC' + interval '2 seconds', null);
UPDATE todo SET title = 'New task!!', version = 2 WHERE id = 4;
DELETE FROM todo WHERE id = 3;
