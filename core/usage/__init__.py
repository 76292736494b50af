"""What jobs cost, in one place: what the providers, the store activity and the API share.

- `costs`: a job's cost (`JobCost`) from the provider's own accounting and PROVIDER_PRICES.
- `store`: sums of the `jobs` table's costs (GET /v1/usage) and a user's spend today (the
  MAX_DAILY_SPEND_PER_USER cap).

A job's cost is written with its success (`activities.media`), in the same transaction, so a
succeeded job and its cost are never seen apart; a job that did not succeed costs nothing here
(fal and KIE bill only successful outputs; a Replicate job that failed after running is billed
but not reported here: UNCONFIRMED how Replicate bills those).
"""
