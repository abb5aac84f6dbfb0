-- What the anomaly detectors have seen: a value (an address, an audience,
-- an agent) per subject (an agent, a SPIFFE ID) and kind, with when it was
-- first seen. A value not here is new; see server/src/anomaly/novelty.rs.
CREATE TABLE anomaly_sightings (
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    value      TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, value)
);
