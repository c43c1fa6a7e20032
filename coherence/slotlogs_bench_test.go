package coherence

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkSlotLogsReplay is the cost of repairing one gap on a Redis
// Cluster: a replay reads all 16,384 slot logs in one pipelined round.
// BenchmarkStreamLogReplay is the same on a single Redis (one stream), in
// the same run, for the ratio.
func BenchmarkSlotLogsReplay(b *testing.B) {
	cl := redistest.StartCluster(b)
	benchmarkReplay(b, Options{Client: cl.Client(b), SlotLogKey: slotLogKey, LogAge: 10 * time.Second})
}

func BenchmarkStreamLogReplay(b *testing.B) {
	srv := redistest.Start(b)
	benchmarkReplay(b, Options{Client: redistest.Client(b, srv), LogKey: "bench:log"})
}

func benchmarkReplay(b *testing.B, opts Options) {
	opts.Channel, opts.Namespace, opts.Origin = "bench:inv", "ns", 1
	opts.OnMessage = func(Message) {}
	opts.OnGap = func(GapReason) { b.Error("a gap was not repaired") }
	bus, err := Subscribe(b.Context(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	b.ReportAllocs()
	for b.Loop() {
		before := bus.Stats().Repairs
		bus.Resync("bench")
		for bus.Stats().Repairs == before {
			time.Sleep(10 * time.Microsecond)
		}
	}
}
