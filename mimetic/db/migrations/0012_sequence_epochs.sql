-- 0012: stream statistics count sequence-counter restarts (new sequence epochs, see
-- processors/sequencing.py) and records refused by the device-clock rule
-- (ingest/wire.py check_device_clock); the per-minute pipeline view shows both.

alter table stream_stats add column restarts integer not null default 0;
alter table stream_stats add column clock_refused integer not null default 0;

create or replace view ops.pipeline_minute as
select time_bucket('1 minute', time) as time, count(distinct device_id) as devices,
       sum(frames) as frames, sum(samples) as samples, sum(gaps) as gaps,
       sum(missing_frames) as missing_frames, sum(duplicates) as duplicates, sum(late) as late,
       sum(dead_lettered) as dead_lettered, sum(restarts) as restarts, sum(clock_refused) as clock_refused
from stream_stats group by 1;
comment on view ops.pipeline_minute is 'Frames, gaps, duplicates, late and dead-lettered frames, sequence '
    'restarts and records refused for their device clock, per minute.';
