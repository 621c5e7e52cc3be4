// Drives a running brook with Debian's Sarama 1.22 (golang-github-shopify-sarama-dev) at the old protocol
// versions its configurations send: versions Kafka 4 removed (KIP-896) and brook serves as Kafka 3.9 did.
// Prints one matrix line per scenario; see compat/README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/Shopify/sarama"
)

var failed bool

func report(scenario string, err error, detail string) {
	if err != nil {
		failed = true
		fmt.Printf("sarama %-32s FAIL  %v\n", scenario, err)
		return
	}
	fmt.Printf("sarama %-32s PASS  %s\n", scenario, detail)
}

func config(version sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = version
	c.ClientID = "sarama-compat"
	c.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	return c
}

func main() {
	bootstrap := "127.0.0.1:9092"
	if len(os.Args) > 1 {
		bootstrap = os.Args[1]
	}
	addrs := []string{bootstrap}
	topic := fmt.Sprintf("sarama-%d", time.Now().UnixNano())

	// V0_10_1_0: CreateTopics v0 and DeleteTopics v0; V0_11_0_0: CreateTopics v1 and DescribeConfigs v0.
	adm0, err := sarama.NewClusterAdmin(addrs, config(sarama.V0_10_1_0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot reach %s: %v\n", bootstrap, err)
		os.Exit(2)
	}
	defer adm0.Close()
	adm1, err := sarama.NewClusterAdmin(addrs, config(sarama.V0_11_0_0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot reach %s: %v\n", bootstrap, err)
		os.Exit(2)
	}
	defer adm1.Close()

	retention := "123456"
	err = adm0.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": &retention}}, false)
	report("create-topics-v0", err, topic)

	err = adm1.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
	var topicErr *sarama.TopicError
	if errors.As(err, &topicErr) && topicErr.Err == sarama.ErrTopicAlreadyExists {
		report("create-topics-v1-already-exists", nil, topicErr.Error())
	} else {
		report("create-topics-v1-already-exists", fmt.Errorf("want TOPIC_ALREADY_EXISTS, got %v", err), "")
	}
	err = adm1.CreateTopic(topic+"-validate", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true)
	report("create-topics-v1-validate-only", err, "")

	entries, err := adm1.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic,
		ConfigNames: []string{"retention.ms", "cleanup.policy"}})
	if err == nil {
		got := map[string]sarama.ConfigEntry{}
		for _, e := range entries {
			got[e.Name] = e
		}
		r, c := got["retention.ms"], got["cleanup.policy"]
		if r.Value != retention || r.Default || c.Value != "delete" || !c.Default {
			err = fmt.Errorf("unexpected entries %+v", entries)
		}
	}
	report("describe-configs-v0", err, "override and default told apart")

	// V0_11_0_0 produces record batches (Produce v3); the old default version would send message format v0.
	pc := config(sarama.V0_11_0_0)
	pc.Producer.Return.Successes = true
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(addrs, pc)
	for i := 0; err == nil && i < 5; i++ {
		_, _, err = producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0,
			Value: sarama.StringEncoder(fmt.Sprint(i))})
	}
	if producer != nil {
		producer.Close()
	}
	report("produce-v3-5-messages", err, "")

	n, err := idempotent(addrs, adm1, topic+"-idempotent")
	report("produce-v3-idempotent", err, fmt.Sprintf("%d messages once each, in order", n))

	// Sarama's default version (V0_8_2_0): ListOffsets v0, OffsetCommit v1, OffsetFetch v1.
	client, err := sarama.NewClient(addrs, config(sarama.NewConfig().Version))
	if err != nil {
		report("old-default-client", err, "")
		os.Exit(1)
	}
	defer client.Close()
	newest, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	oldest, err2 := client.GetOffset(topic, 0, sarama.OffsetOldest)
	if err == nil {
		err = err2
	}
	if err == nil && (oldest != 0 || newest != 5) {
		err = fmt.Errorf("oldest %d newest %d, want 0 and 5", oldest, newest)
	}
	report("list-offsets-v0", err, fmt.Sprintf("oldest=%d newest=%d", oldest, newest))

	report("offset-commit-v1-fetch-v1", commitAndFetch(client, topic), "offset 3 read back")

	err = adm0.DeleteTopic(topic)
	report("delete-topics-v0", err, "")

	if failed {
		os.Exit(1)
	}
}

// idempotent produces 500 messages with Sarama's idempotent producer (InitProducerId v0, then Produce v3
// batches carrying the producer id and sequence numbers) in sends of 50 and reads them back: message i at
// offset i, once. tests/compat.rs checks the stored batches' producer fields on disk.
func idempotent(addrs []string, adm sarama.ClusterAdmin, topic string) (int, error) {
	const n, per = 500, 50
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		return 0, err
	}
	pc := config(sarama.V0_11_0_0)
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Producer.Return.Successes = true
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	pc.Net.MaxOpenRequests = 1 // Sarama's idempotent producer allows only one
	producer, err := sarama.NewSyncProducer(addrs, pc)
	if err != nil {
		return 0, err
	}
	for start := 0; start < n; start += per {
		msgs := make([]*sarama.ProducerMessage, 0, per)
		for i := start; i < start+per; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(fmt.Sprintf("idem-%d", i))})
		}
		if err := producer.SendMessages(msgs); err != nil {
			producer.Close()
			return 0, err
		}
	}
	if err := producer.Close(); err != nil {
		return 0, err
	}
	consumer, err := sarama.NewConsumer(addrs, config(sarama.V0_11_0_0))
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	pcons, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return 0, err
	}
	defer pcons.Close()
	timeout := time.After(30 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case m := <-pcons.Messages():
			if want := fmt.Sprintf("idem-%d", i); m.Offset != int64(i) || string(m.Value) != want {
				return i, fmt.Errorf("offset %d holds %q, want %q at offset %d", m.Offset, m.Value, want, i)
			}
		case err := <-pcons.Errors():
			return i, err
		case <-timeout:
			return i, fmt.Errorf("read %d of %d messages within 30 s", i, n)
		}
	}
	if hw := pcons.HighWaterMarkOffset(); hw != n {
		return n, fmt.Errorf("high watermark %d, want %d", hw, n)
	}
	return n, nil
}

func commitAndFetch(client sarama.Client, topic string) error {
	group := topic + "-group"
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		return err
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		return err
	}
	pom.MarkOffset(3, "sarama-meta")
	if err := pom.Close(); err != nil {
		return err
	}
	if err := om.Close(); err != nil {
		return err
	}
	om, err = sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		return err
	}
	defer om.Close()
	pom, err = om.ManagePartition(topic, 0)
	if err != nil {
		return err
	}
	defer pom.Close()
	if next, meta := pom.NextOffset(); next != 3 || meta != "sarama-meta" {
		return fmt.Errorf("read back %d %q", next, meta)
	}
	return nil
}
