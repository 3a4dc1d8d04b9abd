"""`mimetic watch`: a live terminal view of one device's running session.

`state` folds the device's derived records (and its raw session events, for the
current task) into a bounded, typed picture; `view` draws it in 80 columns;
`stream` reads the Kafka topics with a consumer of its own (assigned partitions,
no group, no commits) and refreshes the screen several times a second.
"""
