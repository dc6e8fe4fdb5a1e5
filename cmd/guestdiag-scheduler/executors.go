package main

import (
	"log/slog"

	"github.com/guestdiag/guestdiag/scheduler/daemon"
	"github.com/guestdiag/guestdiag/scheduler/executor"
)

// The executors `run --executor` knows, each built from its section of
// the config file (executors.qmp, executors.libvirt; docs/scheduler.md).
func init() {
	daemon.RegisterExecutor("qmp", func(decode func(any) error, log *slog.Logger) (executor.Executor, error) {
		var cfg executor.QMPConfig
		if err := decode(&cfg); err != nil {
			return nil, err
		}
		return executor.NewQMP(cfg, log)
	})
	daemon.RegisterExecutor("libvirt", func(decode func(any) error, log *slog.Logger) (executor.Executor, error) {
		var cfg executor.LibvirtConfig
		if err := decode(&cfg); err != nil {
			return nil, err
		}
		return executor.NewLibvirt(cfg, log)
	})
}
