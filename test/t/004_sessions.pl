# Real concurrent sessions on one server, in each mode: the local store
# alone, and with stampede.valkey_url set for every session (PGOPTIONS, as
# a pool or an application would) on a redis-server of this test's own:
#
#   - 50 sessions call a cold key at once: one execution, the same rows;
#   - a waiter honours statement_timeout and cancel at once, and holds no
#     stampede lock after either; a terminated waiter leaves no lock;
#   - a terminated leader is taken over by its waiter (one execution);
#   - stampede.max_wait with wait_timeout_action = error raises 55P03
#     after about max_wait, counted in stampede_stats.timeouts;
#   - keys are kept apart per database, also with a stampede.namespace
#     set on purpose;
#   - no stampede lock is left behind.
#
# (The isolation specs leader_statement_timeout and max_wait_execute order
# the interleavings without timing bounds.)  Sessions are ordered by locks
# (a gate, an advisory lock the test holds, that the leader's query waits
# for) and by polling pg_locks, never by sleeps.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node stat_of call_sql start_call call_result close_gate
  open_gate leader_at_gate waiting_on stampede_locks);
use Test::More;
use Time::HiRes qw(time);

my $GATE = 779;     # holds the leader's query
my $START = 780;    # the start line of the 50 sessions

my $valkey = StampedeTest::Valkey->new;
my $node = new_node(
	'sessions', qq{
max_connections = 120
stampede.local_cache_size = '8MB'
}, setup => q{
CREATE SEQUENCE sess_runs;
CREATE TABLE herd_rows (mode text, pid int, rows text);
});

sub runs
{
	return $node->safe_psql('postgres',
		"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sess_runs");
}

# A call whose query waits at the gate, then counts its execution.
sub gated
{
	my ($key) = @_;
	return call_sql($key,
		"SELECT nextval('sess_runs') AS run FROM pg_advisory_xact_lock_shared($GATE)");
}

# Close the gate and start a call for KEY whose query waits there.
sub leader_here
{
	my ($key, @settings) = @_;
	my $gate = close_gate($node, $GATE);
	my ($leader, $pid) = leader_at_gate($node, $GATE, gated($key), @settings);
	return ($gate, $leader, $pid);
}

# Open the gate: the leader, if given, then returns its rows.
sub open_here
{
	my ($gate, $leader, $what) = @_;
	open_gate($gate);
	return unless $leader;
	my $r = call_result($leader);
	ok(!defined $r->{code} && $r->{out} =~ /^\d+$/, "$what: the leader then returns its rows")
	  or diag($r->{err});
	$leader->quit;
}

sub wait_for
{
	my ($what, $sql) = @_;
	$node->poll_query_until('postgres', $sql) or die "timed out waiting for $what";
}

foreach my $mode ('local', 'valkey')
{
	if ($mode eq 'valkey')
	{
		$ENV{PGOPTIONS} = '-c stampede.valkey_url=' . $valkey->url;
	}
	else
	{
		delete $ENV{PGOPTIONS};
	}
	note "---- mode $mode";
	is($node->safe_psql('postgres', 'SELECT mode FROM stampede_status()'),
		$mode, "$mode: stampede_status says the mode is $mode");

	# ---- 50 sessions on a cold key: one execution, the same rows ----
	{
		my $script = $node->basedir . "/herd_$mode.sql";
		PostgreSQL::Test::Utils::append_to_file($script,
			"SELECT pg_advisory_lock_shared($START), pg_advisory_unlock_shared($START);\n"
			  . "INSERT INTO herd_rows SELECT '$mode', pg_backend_pid(), "
			  . "string_agg(run || ':' || g, ',' ORDER BY g) FROM ("
			  . call_sql("$mode:herd",
				"SELECT run, g FROM (SELECT nextval('sess_runs') AS run FROM pg_sleep(0.2)) s, "
				  . "generate_series(1, 3) g", 'run bigint, g int')
			  . ") s;\n");
		my ($before, $executions) = (runs(), stat_of($node, 'executions'));
		my $start = $node->background_psql('postgres');
		$start->query_safe("SELECT pg_advisory_lock($START)");
		my ($out, $err) = ('', '');
		my $herd = IPC::Run::start(
			[
				'pgbench', '-n', '-c', '50', '-j', '2', '-t', '1', '-f', $script,
				'-h', $node->host, '-p', $node->port, 'postgres'
			],
			'>', \$out, '2>', \$err);
		# Each session first waits at the start line, then all call at once.
		wait_for('50 sessions at the start line',
			"SELECT count(*) = 50 FROM pg_locks WHERE locktype = 'advisory' "
			  . "AND objid = $START AND NOT granted");
		$start->query_safe("SELECT pg_advisory_unlock($START)");
		$start->quit;
		$herd->finish;
		is(($herd->results)[0], 0, "$mode: 50 sessions called without an error")
		  or diag("$out$err");
		is(runs() - $before, 1, "$mode: 50 sessions on a cold key ran its query once");
		is(stat_of($node, 'executions') - $executions,
			1, "$mode: stampede_stats counted one execution");
		is( $node->safe_psql('postgres',
				"SELECT count(*) || ' ' || count(DISTINCT rows) || ' ' || "
				  . "max(cardinality(string_to_array(rows, ','))) FROM herd_rows WHERE mode = '$mode'"),
			'50 1 3',
			"$mode: the 50 sessions got the same 3 rows");
	}

	# ---- a waiter honours statement_timeout at once ----
	{
		my ($gate, $leader) = leader_here("$mode:timeout");
		my ($waiter, $pid) = start_call($node, gated("$mode:timeout"), "statement_timeout = '300ms'");
		my $r = call_result($waiter);
		my $took = $r->{ended} - $waiter->{started};
		is($r->{code}, '57014', "$mode: the waiter's statement_timeout raises 57014")
		  or diag($r->{err});
		ok($took < 1.0, sprintf("$mode: statement_timeout of 300 ms took %.3f s", $took));
		is(stampede_locks($node, $pid), 0, "$mode: the timed-out waiter holds no stampede lock");
		$waiter->quit;
		open_here($gate, $leader, "$mode: statement_timeout");
	}

	# ---- a waiter honours cancel at once ----
	{
		my ($gate, $leader) = leader_here("$mode:cancel");
		my ($waiter, $pid) = start_call($node, gated("$mode:cancel"));
		wait_for("the waiter on the leader's lock", waiting_on($pid));
		my $cancelled = time;
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
		my $r = call_result($waiter);
		is($r->{code}, '57014', "$mode: the cancelled waiter raises 57014") or diag($r->{err});
		ok($r->{ended} - $cancelled < 0.5,
			sprintf("$mode: the cancel took %.3f s", $r->{ended} - $cancelled));
		is(stampede_locks($node, $pid), 0, "$mode: the cancelled waiter holds no stampede lock");
		$waiter->quit;
		open_here($gate, $leader, "$mode: cancel");
	}

	# ---- a terminated waiter leaves no lock ----
	{
		my ($gate, $leader) = leader_here("$mode:terminate-waiter");
		my ($waiter, $pid) = start_call($node, gated("$mode:terminate-waiter"));
		wait_for("the waiter on the leader's lock", waiting_on($pid));
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
		my $r = call_result($waiter);
		ok($r->{out} eq '' && $r->{err} =~ /terminating connection|server closed the connection/,
			"$mode: the terminated waiter returned no rows, its connection ended")
		  or diag("out: $r->{out}\nerr: $r->{err}");
		wait_for('the waiter gone', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid");
		is(stampede_locks($node, $pid), 0, "$mode: the terminated waiter left no stampede lock");
		eval { $waiter->quit };
		open_here($gate, $leader, "$mode: terminated waiter");
	}

	# ---- a terminated leader is taken over ----
	{
		my $before = runs();
		my ($gate, $leader, $leader_pid) = leader_here("$mode:terminate");
		my ($waiter, $pid) = start_call($node, gated("$mode:terminate"));
		wait_for("the waiter on the leader's lock", waiting_on($pid));
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($leader_pid)");
		# The waiter leads now: it runs the query, which waits at the gate.
		wait_for('the waiter leading', waiting_on($pid, $GATE));
		open_gate($gate);
		my $r = call_result($waiter);
		ok(!defined $r->{code} && $r->{out} =~ /^\d+$/,
			"$mode: the waiter of a terminated leader returns rows") or diag($r->{err});
		is(runs() - $before, 1, "$mode: the query ran once (the terminated leader's never ran)");
		is(stampede_locks($node), 0, "$mode: no stampede lock is left after the takeover");
		$waiter->quit;
		eval { $leader->quit };
	}

	# ---- stampede.max_wait with wait_timeout_action = error: 55P03 ----
	{
		my ($gate, $leader) = leader_here("$mode:max-wait-error");
		my $timeouts = stat_of($node, 'timeouts');
		my ($waiter) = start_call($node, gated("$mode:max-wait-error"),
			"stampede.max_wait = '200ms'", "stampede.wait_timeout_action = 'error'");
		my $r = call_result($waiter);
		my $took = $r->{ended} - $waiter->{started};
		is($r->{code}, '55P03', "$mode: max_wait with wait_timeout_action = error raises 55P03")
		  or diag($r->{err});
		ok($took > 0.15 && $took < 1.0,
			sprintf("$mode: max_wait of 200 ms returned after %.3f s", $took));
		is(stat_of($node, 'timeouts'), $timeouts + 1, "$mode: the timeout is counted");
		$waiter->quit;
		open_here($gate, $leader, "$mode: max_wait");
	}

	# ---- keys are kept apart per database, also with a namespace set ----
	{
		$node->safe_psql('postgres', 'CREATE DATABASE sess_other');
		$node->safe_psql('sess_other', 'CREATE EXTENSION stampede');
		my $sql = call_sql("$mode:db", 'SELECT current_database()::text AS db', 'db text');
		is($node->safe_psql('postgres', $sql) . ' ' . $node->safe_psql('sess_other', $sql),
			'postgres sess_other', "$mode: one key in two databases: each its own rows");

		# stampede.namespace (say, in postgresql.conf) shares Valkey between
		# clusters, never between databases: the database is in every
		# entry's identity and Valkey name.
		my $ns = "SET stampede.namespace = 'sess-ns-$mode';\n";
		$sql = call_sql("$mode:ns", 'SELECT current_database()::text AS db', 'db text');
		is( join(' ',
				$node->safe_psql('postgres', "$ns$sql"),
				split(/\n/, $node->safe_psql('sess_other', "$ns$sql;\n$sql"))),
			'postgres sess_other sess_other',
			"$mode: with one stampede.namespace set, still each database its own rows");
		$node->safe_psql('postgres', 'DROP DATABASE sess_other');
	}

	is(stampede_locks($node), 0, "$mode: no stampede lock is left behind");
}

$valkey->stop;
done_testing();
