package executor

import "log/slog"

func testLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
