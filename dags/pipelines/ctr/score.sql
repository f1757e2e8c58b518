-- Candidate (user, item) pairs of the run's day (the ds parameter), one row per pair, with the raw features.
SELECT
  user_id,
  item_id,
  item_category,
  device,
  country,
  hour,
  user_age,
  item_price,
  position
FROM candidates
WHERE event_date = @ds
