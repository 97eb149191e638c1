-- Settlement: orders past their refund window shrink to a marker in the worker's state
-- (streams/settlement.py). settled_at says the sweep has sent that order's settle command.
ALTER TABLE order_claims ADD COLUMN settled_at timestamptz;
CREATE INDEX order_claims_unsettled_idx ON order_claims (claimed_at) WHERE settled_at IS NULL;
