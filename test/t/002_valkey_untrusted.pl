# What Valkey holds, anyone who can write to Valkey may have written.  A
# primary and its streaming replica (they share the file stampede_secret: the
# replica is made from a base backup) and one redis-server without a
# password; an entry is filled by a call, then rewritten in Valkey by this
# script, then read by a call on the primary and on the replica:
#
#   a. rewritten without the secret (a text length byte, the row count, the
#      column count, bytes appended, truncated, garbage, another key's
#      entry): a miss, the right rows, the entry replaced (the next call is
#      a hit), the rejection counted in valkey_rejected and logged once per
#      incident, not once per call;
#   b. the same kind of damage sealed again with the secret (read here from
#      the primary's data directory), as a peer with a bug would write it:
#      a text length too big and too small, a TOAST pointer, a row count
#      larger than the rows, a data length past the end, a null flag without
#      its bitmap: a miss, the right rows;
#   c. 300 random rewrites of 1 to 4 bytes, not sealed again: the right rows
#      every time;
#   d. 300 random rewrites sealed again: the server survives each, and each
#      call returns rows or a clean ERROR (the writer held the secret: its
#      rows may be other rows);
#   e. an entry sealed with an expiry in the past: not used, a plain miss
#      (Valkey drops an entry at its ttl, an instant after the expiry it
#      carries: reading one in between is no tampering, so neither counted
#      as a Valkey error nor logged);
#   f. a third, independent cluster in the same namespace does not take the
#      primary's entries, nor the primary its, unless both set the same
#      stampede.valkey_secret: then it does (a hit).
#
# After each, the server has not restarted (pg_postmaster_start_time, a
# fresh SELECT 1, no crash in its log).  Sessions are ordered by the
# counters of stampede_stats and what Valkey holds, never by sleeps.
use strict;
use warnings;

use Digest::SHA qw(sha256 hmac_sha256);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node primary_and_replica stat_of);
use Test::More;
use Time::HiRes qw(time);

# The entry's header (src/entry_format.h, x86-64): what this script reads
# and rewrites of it.
my %OFF = (
	total_len => 16,
	natts => 20,
	rows_offset => 44,
	nrows => 56,
	expires_at => 144,
	mac => 152,
	header => 184);
my $MAC_LEN = 32;
my $PG_EPOCH = 946684800;    # 2000-01-01 in Unix time: TimestampTz's zero
my $REJECTED = qr/stampede rejected an entry read from Valkey/;

my $valkey = StampedeTest::Valkey->new;

# ---- the servers ----

my $conf = qq{
stampede.valkey_url = '@{[ $valkey->url ]}'
stampede.namespace = 'shared'
};

my ($primary, $replica) = primary_and_replica($conf);
is($replica->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the second server is a streaming replica of the first');

my $secret = slurp_file($primary->data_dir . '/stampede_secret');
is(length($secret), 32, 'the primary has a secret of 32 bytes');
is(slurp_file($replica->data_dir . '/stampede_secret'),
	$secret, 'the replica has the same secret (its base backup carried it)');
my $mac_key = sha256("stampede entries in Valkey, v1:" . $secret);

my %started;
$started{ $_->name } = $_->safe_psql('postgres', 'SELECT pg_postmaster_start_time()')
  foreach ($primary, $replica);

# ---- entries ----

sub u16 { return unpack('v', substr($_[0], $_[1], 2)); }
sub u32 { return unpack('V', substr($_[0], $_[1], 4)); }
sub u64 { return unpack('Q<', substr($_[0], $_[1], 8)); }

# The HMAC an entry's mac field must hold under a key.
sub mac_of
{
	my ($entry, $key) = @_;
	substr($entry, $OFF{mac}, $MAC_LEN) = "\0" x $MAC_LEN;
	return hmac_sha256($entry, $key);
}

# Seal an entry as a server holding the secret does; optionally with an expiry.
sub seal
{
	my ($entry, $expires_at) = @_;
	substr($entry, $OFF{expires_at}, 8) = pack('q<', $expires_at) if defined $expires_at;
	substr($entry, $OFF{mac}, $MAC_LEN) = mac_of($entry, $mac_key);
	return $entry;
}

sub sealed
{
	my ($entry) = @_;
	return length($entry) >= $OFF{header}
	  && substr($entry, $OFF{mac}, $MAC_LEN) eq mac_of($entry, $mac_key);
}

# Each row's header, bitmap and data offsets and its data length.
sub entry_rows
{
	my ($entry) = @_;
	my $natts = u16($entry, $OFF{natts});
	my $p = u32($entry, $OFF{rows_offset});
	my @rows;
	foreach (1 .. u64($entry, $OFF{nrows}))
	{
		my ($datalen, $flags) = unpack('VC', substr($entry, $p, 5));
		my $bitmap = ($flags & 1) ? int(($natts + 7) / 8) : 0;
		push @rows,
		  { at => $p, flags => $flags, data => $p + 5 + $bitmap, datalen => $datalen };
		$p += 5 + $bitmap + $datalen;
	}
	die 'the rows do not end where the entry does' unless $p == length($entry);
	return @rows;
}

# ---- calls ----

# The query of most cases: ints, texts with 1-byte varlena headers, numerics
# and a NULL.  Its first row's data: id (int4) at 0, txt ('ttt', a 1-byte
# header 0x09) at 4, n (a numeric) at 8.
my $QUERY = q{SELECT g AS id, repeat('t', g * 3) AS txt,
  CASE WHEN g % 3 = 0 THEN NULL ELSE g * 1.5 END AS n FROM generate_series(1, 5) g};
my $COLS = 'id int, txt text, n numeric';
my $TEXT_HEADER = 4;    # in the first row's data

sub call_sql
{
	my ($key, $query, $cols) = @_;
	return StampedeTest::call_sql($key, $query // $QUERY, $cols // $COLS);
}

my $expected = $primary->safe_psql('postgres', $QUERY);
is($replica->safe_psql('postgres', $QUERY), $expected, 'the query has the same rows on both');

# A call in a session of its own: its rows and how it was answered.
sub call
{
	my ($node, $key, @settings) = @_;
	my $sql = join('', map { "SET $_;\n" } @settings)
	  . call_sql($key) . ";\n\\echo ==\nSHOW stampede.last_call;\n";
	my $out = $node->safe_psql('postgres', $sql);
	my ($rows, $how) = split(/\n?==\n/, $out, 2);
	return ($rows, $how);
}

my %entry_names;    # Valkey name => 1, for each entry name seen so far

sub entry_names { return @{ $valkey->command('KEYS', 'stampede:*:v') }; }
$entry_names{$_} = 1 foreach entry_names();

# Fill a key with a call on the primary: the Valkey name and bytes of its entry.
sub fill
{
	my ($key, @settings) = @_;
	my ($rows, $how) = call($primary, $key, @settings);
	die "filling $key: $how" unless $how eq 'led' && $rows eq $expected;
	# The leader stores its rows before the call returns them.
	my @new = grep { !$entry_names{$_} } entry_names();
	die "filling $key left " . scalar(@new) . ' new entries in Valkey' unless @new == 1;
	$entry_names{ $new[0] } = 1;
	return ($new[0], $valkey->command('GET', $new[0]));
}

sub put
{
	my ($name, $bytes) = @_;
	$valkey->command('SET', $name, $bytes, 'PX', 300000);
}

sub log_size { return -s $_[0]->logfile; }

sub log_since
{
	my ($node, $from) = @_;
	my $log = slurp_file($node->logfile);
	return substr($log, $from);
}

sub count_of
{
	my ($text, $re) = @_;
	my $n = () = $text =~ /$re/g;
	return $n;
}

# The server is the one that started, answers, and no process of it crashed.
sub survived
{
	my ($node, $what, $log_from) = @_;
	my $name = $node->name;
	my $start = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
	is($start, $started{$name}, "$what ($name): the server did not restart");
	is($node->safe_psql('postgres', 'SELECT 1'), '1', "$what ($name): a new session works");
	unlike(log_since($node, $log_from),
		qr/terminated by signal|server process .* exited with exit code|reinitializing/,
		"$what ($name): no server process crashed");
}

my $text_header;    # the first row's text header byte, as the writer wrote it

# ---- a, b: structural rewrites, without and with the secret ----

# Each: a name and what it does to the entry's bytes.
my @unsealed = (
	[
		'a byte of a text length header flipped',
		sub { my $e = shift; substr($e, (entry_rows($e))[0]{data} + $TEXT_HEADER, 1) ^= "\x02"; $e }
	],
	[ 'the row count set huge', sub { my $e = shift; substr($e, $OFF{nrows}, 8) = pack('Q<', 1 << 40); $e } ],
	[ 'the column count changed', sub { my $e = shift; substr($e, $OFF{natts}, 2) = pack('v', u16($e, $OFF{natts}) + 1); $e } ],
	[ 'bytes appended', sub { $_[0] . "appended\0\x01\x02" } ],
	[ 'truncated', sub { substr($_[0], 0, length($_[0]) - 7) } ],
	[ 'replaced by garbage', sub { join('', map { chr(($_ * 37 + 11) % 256) } 1 .. 400) } ],
);

my @resealed = (
	[
		'a text length too big',
		sub { my $e = shift; substr($e, (entry_rows($e))[0]{data} + $TEXT_HEADER, 1) = chr((104 << 1) | 1); $e }
	],
	[
		'a text length too small',
		sub { my $e = shift; substr($e, (entry_rows($e))[0]{data} + $TEXT_HEADER, 1) = chr((3 << 1) | 1); $e }
	],
	[
		'a 1-byte varlena header 0x01 (a TOAST pointer)',
		sub { my $e = shift; substr($e, (entry_rows($e))[0]{data} + $TEXT_HEADER, 1) = "\x01"; $e }
	],
	[ 'a row count larger than the rows', sub { my $e = shift; substr($e, $OFF{nrows}, 8) = pack('Q<', u64($e, $OFF{nrows}) + 1); $e } ],
	[
		'a data length past the end',
		sub { my $e = shift; my $last = (entry_rows($e))[-1]; substr($e, $last->{at}, 4) = pack('V', $last->{datalen} + 8); $e }
	],
	[
		'a null bitmap flag without a bitmap',
		sub { my $e = shift; my $first = (entry_rows($e))[0]; substr($e, $first->{at} + 4, 1) = chr($first->{flags} | 1); $e }
	],
);

foreach my $node ($primary, $replica)
{
	my $name = $node->name;
	my $log_from = log_size($node);

	# a: every rewrite's key is filled and rewritten first, then all are read
	# in one session: one incident, one log line.
	my @cases;
	foreach my $i (0 .. $#unsealed)
	{
		my ($what, $rewrite) = @{ $unsealed[$i] };
		my ($vname, $entry) = fill("tap:a$i:$name");
		if (!defined $text_header)
		{
			$text_header = ord(substr($entry, (entry_rows($entry))[0]{data} + $TEXT_HEADER, 1));
			is($text_header, (4 << 1) | 1, "the first row's text 'ttt' has a 1-byte header, 0x09");
			ok(sealed($entry), 'the entry in Valkey is sealed as this script computes it');
			ok(u64($entry, $OFF{expires_at}) > (time - $PG_EPOCH) * 1e6,
				'the entry expires in the future');
		}
		my $bad = $rewrite->($entry);
		die "the rewrite \"$what\" changed nothing" if $bad eq $entry;
		put($vname, $bad);
		push @cases, [ $what, "tap:a$i:$name", $vname, $bad ];
	}
	my $rejected = stat_of($node, 'valkey_rejected');
	my $errors = stat_of($node, 'valkey_errors');
	my $executions = stat_of($node, 'executions');
	my $log_before = log_size($node);
	my $sql = '';
	$sql .= call_sql($_->[1]) . ";\n\\echo ==\nSHOW stampede.last_call;\n\\echo ==\n" foreach @cases;
	my @out = split(/\n?==\n/, $node->safe_psql('postgres', $sql) . "\n");
	foreach my $c (@cases)
	{
		my ($what, $key, $vname, $bad) = @$c;
		my ($rows, $how) = splice(@out, 0, 2);
		is($rows, $expected, "a. $what ($name): the right rows");
		is($how, 'led', "a. $what ($name): a miss");
		my $now = $valkey->command('GET', $vname);
		ok($now ne $bad && sealed($now), "a. $what ($name): the entry is replaced by a sealed one");
	}
	is(stat_of($node, 'executions') - $executions, scalar(@cases),
		"a ($name): each rewritten entry's query ran once");
	ok(stat_of($node, 'valkey_rejected') - $rejected >= @cases,
		"a ($name): each rejection is counted in valkey_rejected");
	is(stat_of($node, 'valkey_errors'), $errors,
		"a ($name): and not as a Valkey error");
	is(count_of(log_since($node, $log_before), $REJECTED), 1,
		"a ($name): " . scalar(@cases) . ' rejections in one session are logged once');
	foreach my $c (@cases)
	{
		my ($rows, $how) = call($node, $c->[1]);
		ok($rows eq $expected && $how eq 'hit', "a. $c->[0] ($name): the next call is a hit");
	}

	# a: another key's entry, sealed with the secret: not this key's rows.
	{
		my ($vname) = fill("tap:a-mine:$name");
		my (undef, $theirs) = fill("tap:a-theirs:$name");
		put($vname, $theirs);
		my ($rows, $how) = call($node, "tap:a-mine:$name");
		is($rows, $expected, "a. another key's entry ($name): the right rows");
		is($how, 'led', "a. another key's entry ($name): a miss");
		ok($valkey->command('GET', $vname) ne $theirs, "a. another key's entry ($name): replaced");
		($rows, $how) = call($node, "tap:a-mine:$name");
		ok($rows eq $expected && $how eq 'hit', "a. another key's entry ($name): the next call is a hit");
	}
	survived($node, 'a', $log_from);

	# b: sealed again, with the secret: the checks of each row refuse them.
	foreach my $i (0 .. $#resealed)
	{
		my ($what, $rewrite) = @{ $resealed[$i] };
		my ($vname, $entry) = fill("tap:b$i:$name");
		my $bad = seal($rewrite->($entry));
		die "the rewrite \"$what\" changed nothing" if $bad eq $entry;
		put($vname, $bad);
		my ($rows, $how) = call($node, "tap:b$i:$name");
		is($rows, $expected, "b. $what, sealed ($name): the right rows");
		is($how, 'led', "b. $what, sealed ($name): a miss");
		($rows, $how) = call($node, "tap:b$i:$name");
		ok($rows eq $expected && $how eq 'hit', "b. $what, sealed ($name): replaced, the next call is a hit");
	}
	survived($node, 'b', $log_from);

	# e: sealed, but expired a minute ago.
	{
		my ($vname, $entry) = fill("tap:e:$name");
		put($vname, seal($entry, int((time - $PG_EPOCH - 60) * 1e6)));
		my $rejected = stat_of($node, 'valkey_rejected');
		my $log_before = log_size($node);
		my ($rows, $how) = call($node, "tap:e:$name");
		is($rows, $expected, "e. an expired entry ($name): the right rows");
		is($how, 'led', "e. an expired entry ($name): a miss");
		ok(sealed($valkey->command('GET', $vname))
			  && u64($valkey->command('GET', $vname), $OFF{expires_at}) > (time - $PG_EPOCH) * 1e6,
			"e. an expired entry ($name): replaced by one in date");
		is(stat_of($node, 'valkey_rejected'), $rejected,
			"e. an expired entry ($name): a plain miss, not counted as a rejection");
		is(count_of(log_since($node, $log_before), $REJECTED), 0,
			"e. an expired entry ($name): nor logged as a rejection");
		($rows, $how) = call($node, "tap:e:$name");
		ok($rows eq $expected && $how eq 'hit', "e. an expired entry ($name): the next call is a hit");
	}
	survived($node, 'e', $log_from);
}

# ---- c, d: random rewrites ----

# Notes of each query of a background session would fill the output: these
# loops keep them out, and report when done.
sub quietly
{
	my ($code) = @_;
	my $builder = Test::More->builder;
	my $out = $builder->output;
	open(my $null, '>', File::Spec->devnull) or die;
	$builder->output($null);
	my @result = eval { $code->() };
	my $err = $@;
	$builder->output($out);
	die $err if $err;
	return @result;
}

# Rewrite 1 to 4 distinct bytes, each to another value; half of the time all
# in the rows, where the checks of each value work.
sub mutate
{
	my ($entry) = @_;
	my $rows_at = u32($entry, $OFF{rows_offset});
	my $from = rand() < 0.5 ? $rows_at : 0;
	my $n = 1 + int(rand(4));
	my %at;
	$at{ $from + int(rand(length($entry) - $from)) } = 1 while keys(%at) < $n;
	substr($entry, $_, 1) ^= chr(1 + int(rand(255))) foreach keys %at;
	return $entry;
}

srand(20261201);
foreach my $node ($primary, $replica)
{
	my $name = $node->name;
	my $log_from = log_size($node);

	# c: not sealed again: every one is rejected, each call gets the right rows.
	{
		my ($vname, $entry) = fill("tap:c:$name");
		my $rejected = stat_of($node, 'valkey_rejected');
		my $executions = stat_of($node, 'executions');
		my $log_before = log_size($node);
		my $session;
		my ($right, @wrong) = (0);
		quietly(sub {
			$session = $node->background_psql('postgres', on_error_stop => 0);
			foreach my $i (1 .. 300)
			{
				my $bad = mutate($entry);
				put($vname, $bad);
				my ($out) = $session->query(call_sql("tap:c:$name") . ";\nSHOW stampede.last_call");
				if ($session->{stderr} eq '' && $out eq "$expected\nled")
				{
					$right++;
				}
				else
				{
					push @wrong, "mutation $i: " . unpack('H*', $bad) . "\n  got: $out\n  error: $session->{stderr}";
					$session->{stderr} = '';
					last if @wrong >= 3;
				}
			}
		});
		$session->quit;
		is($right, 300, "c. 300 random rewrites, not sealed ($name): the right rows every time, each a miss")
		  or diag(join("\n", @wrong));
		ok(stat_of($node, 'valkey_rejected') - $rejected >= 300,
			"c ($name): each rejection is counted in valkey_rejected");
		is(stat_of($node, 'executions') - $executions, 300, "c ($name): 300 executions");
		is(count_of(log_since($node, $log_before), $REJECTED), 1,
			"c ($name): 300 rejections in one session are logged once");
		survived($node, 'c', $log_from);
	}

	# d: sealed again: the server survives each, each call rows or a clean ERROR.
	{
		my ($vname, $entry) = fill("tap:d:$name");
		my $session;
		my %outcome = (miss => 0, same => 0, other => 0, error => 0);
		my @bad;
		quietly(sub {
			$session = $node->background_psql('postgres', on_error_stop => 0);
			foreach my $i (1 .. 300)
			{
				my $mutated = seal(mutate($entry));
				put($vname, $mutated);
				my ($out) = $session->query(
					call_sql("tap:d:$name") . ";\n\\echo ==\nSHOW stampede.last_call");
				my $err = $session->{stderr};
				$session->{stderr} = '';
				my ($rows, $how) = split(/\n?==\n/, $out, 2);
				if ($err eq '' && defined $how && $how eq 'hit')
				{
					$outcome{ $rows eq $expected ? 'same' : 'other' }++;
				}
				elsif ($err eq '' && defined $how && $rows eq $expected)
				{
					$outcome{miss}++;
				}
				elsif ($err eq '')
				{
					push @bad, "mutation $i: " . unpack('H*', $mutated) . "\n  a miss with other rows: $out";
					$outcome{broken}++;
					last;
				}
				elsif ($err =~ /^(?:psql:[^\n]*: )?ERROR:  /
					&& $err !~ /server closed|connection|terminat/i)
				{
					$outcome{error}++;
					push @bad, "mutation $i: clean error: $err" if $outcome{error} <= 3;
				}
				else
				{
					push @bad, "mutation $i: " . unpack('H*', $mutated) . "\n  error: $err";
					$outcome{broken}++;
					last;
				}
			}
		});
		eval { $session->quit };
		my $calls = $outcome{miss} + $outcome{same} + $outcome{other} + $outcome{error};
		is($calls, 300,
			"d. 300 random rewrites, sealed ($name): each call returned rows or a clean ERROR "
			  . "($outcome{miss} misses, $outcome{same} hits with the same rows, "
			  . "$outcome{other} hits with other rows, $outcome{error} errors)")
		  or diag(join("\n", @bad));
		diag(join("\n", @bad)) if @bad && $calls == 300;
		$valkey->command('DEL', $vname);
		survived($node, 'd', $log_from);
	}
}

# ---- f: an independent cluster in the same namespace ----
{
	my $other = new_node('other', $conf);
	$started{other} = $other->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
	my $log_from = log_size($other);
	isnt(slurp_file($other->data_dir . '/stampede_secret'), $secret,
		'f. the independent cluster has a secret of its own');
	is($other->safe_psql('postgres', $QUERY), $expected, 'f. the query has the same rows there');

	# Each cluster with its own file: neither takes the other's entries.
	my ($vname) = fill('tap:f1');
	my $rejected = stat_of($other, 'valkey_rejected');
	my $log_before = log_size($other);
	my ($rows, $how) = call($other, 'tap:f1');
	is($rows, $expected, "f. the other cluster, its own secret: the right rows");
	is($how, 'led', "f. the other cluster, its own secret: the primary's entry is a miss");
	ok(stat_of($other, 'valkey_rejected') > $rejected, 'f. the rejection is counted there');
	is(count_of(log_since($other, $log_before), $REJECTED), 1, 'f. and logged there');
	ok(!sealed($valkey->command('GET', $vname)), "f. Valkey now holds the other cluster's entry, not sealed with the primary's secret");
	($rows, $how) = call($primary, 'tap:f1');
	ok($rows eq $expected && $how eq 'led', "f. the primary does not take the other cluster's entry either");

	# Different secrets set: still not.
	fill('tap:f2', "stampede.valkey_secret = 'tap-alpha'");
	($rows, $how) = call($other, 'tap:f2', "stampede.valkey_secret = 'tap-beta'");
	ok($rows eq $expected && $how eq 'led', 'f. different stampede.valkey_secret on each: a miss');

	# The same secret set on both: the other cluster takes the primary's rows.
	fill('tap:f3', "stampede.valkey_secret = 'tap-alpha'");
	my $executions = stat_of($other, 'executions');
	my $hits = stat_of($other, 'valkey_hits');
	($rows, $how) = call($other, 'tap:f3', "stampede.valkey_secret = 'tap-alpha'");
	is($rows, $expected, 'f. the same stampede.valkey_secret on both: the right rows');
	is($how, 'hit', "f. the same stampede.valkey_secret on both: a hit on the primary's entry");
	is(stat_of($other, 'executions'), $executions, 'f. the other cluster ran nothing');
	ok(stat_of($other, 'valkey_hits') > $hits, 'f. counted as a Valkey hit');
	# Its file's secret again: the entry sealed with the setting is not taken.
	($rows, $how) = call($other, 'tap:f3');
	ok($rows eq $expected && $how eq 'led', 'f. the setting unset again: a miss');
	survived($other, 'f', $log_from);
	$other->stop;
}

# g: a database still on extension 0.1, answered by this library: its
# stampede_stats has no valkey_rejected, and counts rejections in
# valkey_errors, as 0.1 did.
{
	$primary->safe_psql('postgres', 'CREATE DATABASE on_0_1');
	$primary->safe_psql('on_0_1', "CREATE EXTENSION stampede VERSION '0.1'");
	my $old_stats = "SELECT valkey_errors FROM stampede_stats";
	my $old_errors = $primary->safe_psql('on_0_1', $old_stats);
	my $rejected = stat_of($primary, 'valkey_rejected');
	my ($vname) = fill('tap:g');
	put($vname, 'written by someone without the secret');
	my ($rows, $how) = call($primary, 'tap:g');
	ok($rows eq $expected && $how eq 'led', 'g. a rejected entry: a miss, the right rows');
	is(stat_of($primary, 'valkey_rejected') - $rejected, 1, 'g. counted in valkey_rejected (0.2)');
	is($primary->safe_psql('on_0_1', $old_stats) - $old_errors, 1,
		'g. and in valkey_errors in a database on 0.1');
	is($primary->safe_psql('on_0_1',
			"SELECT count(*) FROM pg_attribute WHERE attrelid = 'stampede_stats'::regclass "
			  . "AND attname = 'valkey_rejected'"),
		0, 'g. the 0.1 view has no valkey_rejected');
}

$valkey->stop;
done_testing();
