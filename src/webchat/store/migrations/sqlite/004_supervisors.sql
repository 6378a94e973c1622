-- Supervisors are agents allowed to monitor any chat and barge in.
ALTER TABLE agents ADD COLUMN supervisor INTEGER NOT NULL DEFAULT 0;
