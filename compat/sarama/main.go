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
