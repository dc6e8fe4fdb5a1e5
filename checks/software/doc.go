// Package software is the guest agent's software check: the installed
// packages, and what was installed, removed, upgraded or downgraded since
// the last committed snapshot. It registers itself as "software".
//
// OS scope: on Linux it reads dpkg's status file, apk's installed file and,
// through `rpm -qa`, the rpm database, whichever exist, and watches them
// with inotify; on Windows it reads the Uninstall keys of both registry
// views and watches them; elsewhere every run is unknown.
package software
