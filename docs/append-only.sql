-- Make chrononaut_activity append-only for the role the application connects as
-- (here "chrononaut_app"). Run it as the table's owner, which must not be that role:
-- an owner can always grant itself the rights back.
REVOKE ALL ON TABLE chrononaut_activity FROM chrononaut_app;
GRANT SELECT, INSERT ON TABLE chrononaut_activity TO chrononaut_app;
GRANT USAGE ON SEQUENCE chrononaut_activity_id_seq TO chrononaut_app;
