package prommetrics

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/remote"
)

// RedisCacheFor is how long a RedisCollector reuses what INFO said:
// scrapes from several Prometheus servers, or a fast scrape interval, cost
// Redis one INFO per node at most this often.
const RedisCacheFor = 5 * time.Second

// redisTimeout bounds one scrape's INFO, per node.
const redisTimeout = time.Second

// NewRedisCollector returns a collector of the Redis side of a cache, read
// from INFO at scrape time (never on a request path) and cached for
// RedisCacheFor: memory used and its limit, the eviction policy, keys
// evicted, connected clients, per node (every node of a Cluster). A cache
// Redis runs with maxmemory and an eviction policy: these are the figures
// to watch and alert on (docs/metrics.md). name is the constant label
// redis; the client is the caller's and is not closed.
func NewRedisCollector(name string, c rueidis.Client) prometheus.Collector {
	l := prometheus.Labels{"redis": name}
	d := func(metric, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tiercache_redis_"+metric, help, append([]string{"node"}, labels...), l)
	}
	return &redisCollector{client: c,
		up:         d("up", "1 when the node answered INFO at the last read, else 0."),
		usedMemory: d("used_memory_bytes", "Memory Redis uses (INFO used_memory)."),
		maxMemory:  d("maxmemory_bytes", "Redis's memory limit (INFO maxmemory; 0: none)."),
		evicted:    d("evicted_keys_total", "Keys Redis evicted to stay under maxmemory (INFO evicted_keys)."),
		clients:    d("connected_clients", "Client connections (INFO connected_clients)."),
		policy:     d("maxmemory_policy", "The eviction policy in force, as a label; the value is 1.", "policy"),
	}
}

type redisCollector struct {
	client                                              rueidis.Client
	up, usedMemory, maxMemory, evicted, clients, policy *prometheus.Desc

	mu     sync.Mutex
	readAt time.Time
	nodes  []redisNode
}

type redisNode struct {
	addr                              string
	up                                bool
	used, limit, evicted, connections float64
	policy                            string
}

func (r *redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{r.up, r.usedMemory, r.maxMemory, r.evicted, r.clients, r.policy} {
		ch <- d
	}
}

func (r *redisCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range r.read() {
		up := 0.0
		if n.up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(r.up, prometheus.GaugeValue, up, n.addr)
		if !n.up {
			continue
		}
		ch <- prometheus.MustNewConstMetric(r.usedMemory, prometheus.GaugeValue, n.used, n.addr)
		ch <- prometheus.MustNewConstMetric(r.maxMemory, prometheus.GaugeValue, n.limit, n.addr)
		ch <- prometheus.MustNewConstMetric(r.evicted, prometheus.CounterValue, n.evicted, n.addr)
		ch <- prometheus.MustNewConstMetric(r.clients, prometheus.GaugeValue, n.connections, n.addr)
		ch <- prometheus.MustNewConstMetric(r.policy, prometheus.GaugeValue, 1, n.addr, n.policy)
	}
}

// read returns the nodes' figures, reading INFO when the last read is
// older than RedisCacheFor.
func (r *redisCollector) read() []redisNode {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.readAt) < RedisCacheFor && r.nodes != nil {
		return r.nodes
	}
	clients := map[string]rueidis.Client{"default": r.client}
	if r.client.Mode() == rueidis.ClientModeCluster {
		clients = r.client.Nodes()
	}
	nodes := make([]redisNode, 0, len(clients))
	for addr, c := range clients {
		nodes = append(nodes, readNode(addr, c))
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].addr < nodes[j].addr })
	r.nodes, r.readAt = nodes, time.Now()
	return nodes
}

func readNode(addr string, c rueidis.Client) redisNode {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("memory").Section("stats").Section("clients").Build()).ToString()
	if err != nil {
		return redisNode{addr: addr}
	}
	num := func(field string) float64 {
		v, _ := strconv.ParseFloat(remote.InfoField(info, field), 64)
		return v
	}
	return redisNode{addr: addr, up: true, used: num("used_memory"), limit: num("maxmemory"),
		evicted: num("evicted_keys"), connections: num("connected_clients"), policy: remote.InfoField(info, "maxmemory_policy")}
}
