"""A stand-in for the ezmsg package (tests only; see ../README.md). Not ezmsg."""
STANDIN = True
