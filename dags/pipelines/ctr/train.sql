-- Training rows for one run: the day (the ds parameter) and the lookback_days days before it.
-- Never reads past ds, so a backfilled day sees only the data it would have seen then.
SELECT
  event_id,
  user_id,
  item_id,
  item_category,
  device,
  country,
  hour,
  user_age,
  item_price,
  position,
  clicked
FROM events
WHERE event_date BETWEEN DATE_SUB(@ds, INTERVAL @lookback_days DAY) AND @ds
