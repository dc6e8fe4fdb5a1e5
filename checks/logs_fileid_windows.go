package checks

import "os"

// logsFileID has no inode to offer from a FileInfo on Windows; files there
// are told apart by their first bytes only, so a rotation is seen as a
// truncation.
func logsFileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
