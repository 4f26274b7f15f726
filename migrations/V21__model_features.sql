-- The model's inputs of each payment, as the model that scored it read them: what `fraudctl
-- explain --trans-num` explains a stored payment from once its run directory is gone, and what a
-- backtest replays (point in time: the card history the payment had when it was scored). NULL
-- for payments loaded before this column existed.
ALTER TABLE payments_scored ADD COLUMN features double precision[];
COMMENT ON COLUMN payments_scored.features IS 'The model inputs the payment was scored with, in the order of the feature spec of model_version (NULL: loaded before V21).';
