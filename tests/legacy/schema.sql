-- The per-table history tables of Chrononaut 0.1, as its history mapper created them
-- for the models in tests/models.py and the Ticket model of tests/test_data_converters.py.
-- Each holds the model table's columns, the object's version, the time of the change that
-- replaced that state and the change's info. They are created after the models' tables,
-- so the enum type "priority" exists already.

-- 0.1 wrote naive UTC timestamps here; the hidden "secret" column was copied too.
CREATE TABLE todo_history (
    id integer NOT NULL,
    title varchar(80),
    text text,
    done boolean,
    priority priority,
    due_at timestamp with time zone,
    starred boolean,
    secret text,
    version integer NOT NULL,
    changed timestamp without time zone,
    change_info jsonb,
    PRIMARY KEY (id, version)
);

-- A text key, a created_at column and a version that may be NULL (no primary key on it).
CREATE TABLE ticket_history (
    uuid text NOT NULL,
    title text,
    created_at timestamp with time zone,
    version integer,
    changed timestamp with time zone,
    change_info json
);

-- Composite key.
CREATE TABLE translation_history (
    locale varchar(10) NOT NULL,
    slug varchar(40) NOT NULL,
    text text,
    version integer NOT NULL,
    changed timestamp with time zone,
    change_info jsonb,
    PRIMARY KEY (locale, slug, version)
);

-- Joined-table inheritance: the root table's history carries version, changed and
-- change_info; the subclass table's history its own columns, keyed by id and version.
CREATE TABLE animal_history (
    id integer NOT NULL,
    kind varchar(20),
    name varchar(40),
    indoor boolean,
    version integer NOT NULL,
    changed timestamp with time zone,
    change_info jsonb,
    PRIMARY KEY (id, version)
);

CREATE TABLE dog_history (
    id integer NOT NULL,
    breed varchar(40),
    version integer NOT NULL,
    PRIMARY KEY (id, version),
    FOREIGN KEY (id, version) REFERENCES animal_history (id, version)
);

-- A model that named its history table with __chrononaut_tablename__.
CREATE TABLE legacy_old (
    id integer NOT NULL,
    name varchar(40),
    version integer NOT NULL,
    changed timestamp with time zone,
    change_info jsonb,
    PRIMARY KEY (id, version)
);
