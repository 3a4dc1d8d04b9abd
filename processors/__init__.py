"""Signal processing (pure, in `processors.dsp`) and the streaming workers that wire it to Kafka and the database."""
