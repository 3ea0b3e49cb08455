from datetime import datetime, timezone
def test_basic(session, models):
    t = models.Todo(title="a", secret="s", starred=True)
    session.add(t); session.commit()
    t.title = "b"; session.commit()
    t.starred = False; session.commit()
    vs = t.versions()
    assert [v.version for v in vs] == [0, 1], vs
    assert vs[0].title == "a" and vs[1].title == "b"
    t.secret = "x"; session.commit()
    assert t.versions()[-1].chrononaut_meta["extra_info"] == {"hidden_cols_changed": ["secret"]}
    session.delete(t); session.commit()
