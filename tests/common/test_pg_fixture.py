import psycopg


def test_db_url_is_fresh_and_usable(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        assert db_url.endswith("bai.db")
        return
    plain = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        rows = conn.execute(
            "select count(*) from information_schema.tables where table_schema='public'"
        ).fetchone()
    assert rows == (0,)
