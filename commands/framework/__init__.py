"""The command framework: declare commands as data, parse and convert their arguments, check
where and by whom they may run, and turn every outcome into one reply."""
