"""The Mobility service agent the project builds its installer from (`make mobility-installer`): it runs
on the source server's own python3, so it imports nothing of the project."""
