-- Past sessions: find Book objects by primary key, and by author, through an index.
-- Each expression is the one the past session's view gives the column (the CAST to
-- the column's type of the stored JSON text); the WHERE keeps the index to the rows
-- of one table.
CREATE INDEX ix_chrononaut_activity_past_book_id
    ON chrononaut_activity ((CAST(key['id'] #>> '{}' AS INTEGER)))
    WHERE table_name = 'book';

CREATE INDEX ix_chrononaut_activity_past_book_author_id
    ON chrononaut_activity ((CAST(data['author_id'] #>> '{}' AS INTEGER)))
    WHERE table_name = 'book';
