"""Development kit shared by the integration tests and the benchmarks.

Running the bot as a subprocess and driving real matrix-nio practitioner clients. Not part of the
installed bot.
"""
