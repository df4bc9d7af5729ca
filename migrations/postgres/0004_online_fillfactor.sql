-- online_values: half of each new page left free (was 90% full). A bulk write replaces the
-- latest value of every key it touches in one transaction, and a HOT update needs room on the
-- row's own page for the new version while the old one is still visible to others; with 10%
-- free, most of a page's rows moved to other pages (a new heap row and a primary-key entry
-- each, and a table ~1.4x the size). Pages written before this keep their fill until rewritten.
ALTER TABLE online_values SET (fillfactor = 50);
