-- Supervisors are agents allowed to monitor any chat and barge in.
ALTER TABLE agents ADD COLUMN supervisor BOOLEAN NOT NULL DEFAULT false;
